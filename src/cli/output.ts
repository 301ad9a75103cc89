/** Output of hyperbox's own commands (never of create/run: stdout belongs to runc there). */
import { writeSync } from 'node:fs';

/** Writes to fd 1 synchronously and whole (process.stdout would set O_NONBLOCK on a shared pipe). */
export function writeStdout(text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) off += writeSync(1, buf, off, buf.length - off);
}

/** Rows as left-aligned columns, two spaces apart (the first row is the header). */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** Bytes in binary units: "512 B", "1.5 KiB", "300 MiB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** Medians and ratios for side-by-side benchmarks (never absolute times across runs). */
import { readFileSync, writeFileSync } from 'node:fs';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Formats milliseconds with two decimals. */
export const ms = (x: number): string => `${x.toFixed(2)} ms`;

/** Replaces the README block between <!-- bench:NAME --> and <!-- /bench:NAME --> with text. */
export function replaceReadmeBlock(readme: string, name: string, text: string): string {
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const a = readme.indexOf(start);
  const b = readme.indexOf(end);
  if (a < 0 || b < a) throw new Error(`README has no ${start} ... ${end} block`);
  return readme.slice(0, a + start.length) + '\n' + text.trimEnd() + '\n' + readme.slice(b);
}

/** The first line of a capability's benchmark text. */
export function measuredLine(file: string): string {
  return `Measured with \`make bench\` (${file}) on ${new Date().toISOString().slice(0, 10)}, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}.`;
}

/** When run as a script: prints the benchmark's markdown and, with --readme, puts it in README's bench:NAME block. */
export async function benchMain(metaUrl: string, name: string, bench: () => Promise<string>): Promise<void> {
  if (metaUrl !== `file://${process.argv[1]}`) return;
  const text = await bench();
  process.stdout.write(text + '\n');
  if (process.argv.includes('--readme')) writeFileSync('README.md', replaceReadmeBlock(readFileSync('README.md', 'utf8'), name, text));
}

/**
 * Shared by the telemetry integration tests and benchmark: the static C program
 * that makes known calls, a bundle for it, and a local OTLP/HTTP receiver.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Test } from 'tap';
import { buildCFixture } from '../../fixtures/cfixture.js';
import type { BundleOptions, OciSpec } from '../../fixtures/busybox.js';

/** Puts fixtures/c/known_calls.c, static, into a rootfs as /bin/known_calls. */
export async function installKnownCalls(rootfs: string): Promise<void> {
  const bin = await buildCFixture('known_calls', ['-static']);
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync(bin, join(rootfs, 'bin', 'known_calls'));
}

/** A bundle with its own network namespace whose loopback the process may bring up (CAP_NET_ADMIN). */
export function netBundle(args: string[], annotations: Record<string, string> = {}): BundleOptions {
  return {
    args,
    annotations,
    edit: (spec: OciSpec) => {
      const caps = (spec.process.capabilities ?? {}) as Record<string, string[]>;
      for (const set of ['bounding', 'effective', 'permitted']) caps[set] = [...new Set([...(caps[set] ?? []), 'CAP_NET_ADMIN'])];
      spec.process.capabilities = caps;
    },
  };
}

/** A shell script: loopback up, busybox httpd serving `bytes` bytes, one wget of it, md5 of what came. */
export function loopbackTransfer(bytes: number, port = 8080): string[] {
  return [
    'sh',
    '-c',
    `set -e; ip link set lo up; mkdir -p /tmp/www; head -c ${bytes} /dev/zero | tr '\\0' x > /tmp/www/blob; ` +
      `httpd -f -p 127.0.0.1:${port} -h /tmp/www & pid=$!; ` +
      `i=0; until wget -q -O /tmp/got http://127.0.0.1:${port}/blob 2>/dev/null; do i=$((i+1)); [ $i -lt 50 ] || exit 9; sleep 0.1; done; ` +
      'wc -c < /tmp/got; { kill $pid; wait $pid; } 2>/dev/null || true',
  ];
}

export interface OtlpPost {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  at: number;
}

/** A local OTLP/HTTP receiver: records every POST; `mode` 'hang' never answers (a stuck collector). */
export async function otlpReceiver(t: Test, mode: 'ok' | 'hang' = 'ok'): Promise<{ url: string; posts: OtlpPost[] }> {
  const posts: OtlpPost[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = { unparsable: body };
      }
      posts.push({ path: req.url ?? '', headers: req.headers, body: parsed, at: Date.now() });
      if (mode === 'ok') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, posts };
}

/** The data points of one OTLP metric in a request, as { attributes → value } rows. */
export function points(body: any, name: string): { attrs: Record<string, string>; value: any }[] {
  const out: { attrs: Record<string, string>; value: any }[] = [];
  for (const rm of body.resourceMetrics ?? [])
    for (const sm of rm.scopeMetrics)
      for (const m of sm.metrics) {
        if (m.name !== name) continue;
        for (const p of (m.sum ?? m.histogram).dataPoints) {
          const attrs = Object.fromEntries(p.attributes.map((a: any) => [a.key, a.value.stringValue ?? a.value.intValue]));
          out.push({ attrs, value: m.sum ? p.asInt : p });
        }
      }
  return out;
}

/**
 * eBPF telemetry. `io.hyperbox.trace=syscalls,net,exec` has the host-wide
 * recorder count and time the container's syscalls, count its network bytes
 * (cgroup_skb on its cgroup v2) and log its execs, from createRuntime to
 * poststop; `io.hyperbox.trace.otlp=URL` (or the OTEL_EXPORTER_OTLP_* variables)
 * sends the numbers as OTLP/HTTP JSON while it runs and once more when it ends.
 *
 * Telemetry is an observer: when the kernel cannot give it, the container runs
 * anyway and one warning says why.
 *
 * Only the request's grammar is here; the work is loaded when a container or a
 * command needs it.
 */
import { HyperboxError } from '../../errors.js';
import { native as loadNative, type Native } from '../../native/index.js';
import type { DoctorLine, Feature } from '../types.js';
import { traceCommands } from './commands.js';
import { resolveEndpoints, type OtlpEndpoints } from './endpoints.js';

export const ANNOTATION = 'io.hyperbox.trace';
export const OTLP_ANNOTATION = 'io.hyperbox.trace.otlp';
export const INTERVAL_ANNOTATION = 'io.hyperbox.trace.interval';
export const TRACE_KINDS = ['syscalls', 'net', 'exec'] as const;
export type TraceKind = (typeof TRACE_KINDS)[number];

/** OpenTelemetry's default metric export interval (OTEL_METRIC_EXPORT_INTERVAL). */
const DEFAULT_INTERVAL_MS = 60_000;
const MIN_INTERVAL_MS = 100;
const MAX_INTERVAL_MS = 3_600_000;

/** What a container asked for. */
export interface TraceOptions {
  what: TraceKind[];
  /** Where OTLP goes; absent: no OTLP, the summary and Prometheus only. */
  otlp?: OtlpEndpoints;
  /** How often OTLP metrics are sent while the container runs, in ms. */
  intervalMs: number;
}

function parseKinds(value: string): TraceKind[] {
  const parts = value.split(',').map((s) => s.trim());
  if (value.trim() === '' || parts.some((p) => p === '')) {
    throw new HyperboxError('E_ANNOTATION', `bad ${ANNOTATION} value ${JSON.stringify(value)}: expected a comma-separated list of ${TRACE_KINDS.join(', ')}`);
  }
  const kinds: TraceKind[] = [];
  for (const part of parts) {
    if (part === 'all') {
      kinds.push(...TRACE_KINDS);
      continue;
    }
    if (!(TRACE_KINDS as readonly string[]).includes(part)) {
      throw new HyperboxError('E_ANNOTATION', `bad ${ANNOTATION} value ${JSON.stringify(value)}: ${JSON.stringify(part)} is not one of ${TRACE_KINDS.join(', ')} (or all)`);
    }
    kinds.push(part as TraceKind);
  }
  return TRACE_KINDS.filter((k) => kinds.includes(k));
}

/** "250ms", "10s", "2m" or a number of milliseconds (as OTEL_METRIC_EXPORT_INTERVAL is). */
export function parseInterval(value: string, source: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(value);
  const ms = m ? Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1) : NaN;
  if (!Number.isFinite(ms) || ms < MIN_INTERVAL_MS || ms > MAX_INTERVAL_MS) {
    throw new HyperboxError('E_ANNOTATION', `bad ${source} value ${JSON.stringify(value)}: expected a duration from 100ms to 60m, e.g. 10s`);
  }
  return Math.round(ms);
}

/** The request from annotations, with the OTEL_* variables of the creating process as defaults. */
export function planOptions(annotations: Readonly<Record<string, string>>, env: NodeJS.ProcessEnv): TraceOptions | undefined {
  for (const key of Object.keys(annotations)) {
    if (key.startsWith(ANNOTATION + '.') && key !== OTLP_ANNOTATION && key !== INTERVAL_ANNOTATION) {
      throw new HyperboxError('E_ANNOTATION', `unknown annotation ${key}: tracing takes ${ANNOTATION}, ${OTLP_ANNOTATION} and ${INTERVAL_ANNOTATION}`);
    }
  }
  const value = annotations[ANNOTATION];
  if (value === undefined) {
    for (const key of [OTLP_ANNOTATION, INTERVAL_ANNOTATION]) {
      if (annotations[key] !== undefined) throw new HyperboxError('E_ANNOTATION', `${key} needs ${ANNOTATION}=syscalls,net,exec (or a subset) beside it`);
    }
    return undefined;
  }
  const what = parseKinds(value);
  const otlp = resolveEndpoints(annotations[OTLP_ANNOTATION], env);
  const interval = annotations[INTERVAL_ANNOTATION] ?? env.OTEL_METRIC_EXPORT_INTERVAL;
  const source = annotations[INTERVAL_ANNOTATION] !== undefined ? INTERVAL_ANNOTATION : 'OTEL_METRIC_EXPORT_INTERVAL';
  return { what, ...(otlp ? { otlp } : {}), intervalMs: interval === undefined ? DEFAULT_INTERVAL_MS : parseInterval(interval, source) };
}

/** The feature, with its side effects behind `deps` so tests can record them. */
export function traceFeature(deps: { native: () => Native; env?: NodeJS.ProcessEnv } = { native: loadNative }): Feature<TraceOptions> {
  return {
    name: 'trace',
    annotationPrefix: ANNOTATION,
    flags: [
      {
        names: ['trace'],
        value: true,
        commands: ['run', 'create'],
        description: `trace this container: a comma-separated list of ${TRACE_KINDS.join(', ')} (or all)`,
        toAnnotations: (v) => ({ [ANNOTATION]: String(v) }),
      },
      {
        names: ['trace-otlp'],
        value: true,
        commands: ['run', 'create'],
        description: 'send the trace as OTLP/HTTP JSON to this endpoint (…/v1/metrics and …/v1/traces are appended)',
        toAnnotations: (v) => ({ [OTLP_ANNOTATION]: String(v) }),
      },
    ],

    plan: (input) => planOptions(input.annotations, deps.env ?? process.env),

    stages: () => ['createRuntime', 'poststop'],

    hooks: {
      async createRuntime(ctx) {
        const { startTracing } = await import('./collect.js');
        startTracing(deps.native(), ctx);
      },
      async poststop(ctx) {
        const { finishTracing } = await import('./collect.js');
        finishTracing(deps.native(), ctx);
      },
    },

    commands: [traceCommands(deps)],

    async doctor(): Promise<DoctorLine[]> {
      const { bpfSyscallAvailable, btfAvailable, cgroup2Mount } = await import('../../kernel/probes.js');
      const bpf = bpfSyscallAvailable() && btfAvailable();
      return [
        { check: 'BPF for telemetry', ok: bpf, detail: `bpf syscall ${bpfSyscallAvailable() ? 'yes' : 'no'}, BTF ${btfAvailable() ? 'yes' : 'no'}`, consequence: 'traced containers run untraced, with a warning' },
        { check: 'cgroup v2 for telemetry', ok: cgroup2Mount() !== undefined, detail: cgroup2Mount() ?? 'not mounted', consequence: 'traced containers run untraced, with a warning' },
      ];
    },
  };
}

/**
 * PSI-driven memory tuning. `io.hyperbox.tune=memory` (or `--tune memory`)
 * registers the container's cgroup with the host tuner at createRuntime; the
 * tuner keeps it at the smallest size whose memory stall stays under the
 * target (`io.hyperbox.tune.pressure`, default 0.5% of the time), within
 * `io.hyperbox.tune.min` / `.max` and never above the caller's own limit.
 * poststop unregisters it.
 *
 * Tuning is an optimisation: when the kernel cannot give pressure (no PSI, no
 * cgroup v2), the container runs untuned and one warning says why.
 *
 * Only the request's grammar is here; the work loads when a hook or command runs.
 */
import { existsSync } from 'node:fs';
import { HyperboxError } from '../../errors.js';
import { native as loadNative, type Native } from '../../native/index.js';
import { isJsonObject, type JsonObject } from '../../oci/json.js';
import type { DoctorLine, Feature } from '../types.js';
import { tuneCommands } from './commands.js';

export const ANNOTATION = 'io.hyperbox.tune';
export const PRESSURE_ANNOTATION = 'io.hyperbox.tune.pressure';
export const MIN_ANNOTATION = 'io.hyperbox.tune.min';
export const MAX_ANNOTATION = 'io.hyperbox.tune.max';
const KEYS = [ANNOTATION, PRESSURE_ANNOTATION, MIN_ANNOTATION, MAX_ANNOTATION];

/** 0.5% of the time stalled: low enough that a latency-sensitive workload does not notice. */
export const DEFAULT_TARGET_US = 5000;
const MIN_TARGET_US = 100;
const MAX_TARGET_US = 500_000;
const MIN_BYTES = 1024 * 1024;

export interface TuneOptions {
  /** What is tuned (memory is the one resource so far). */
  resource: 'memory';
  /** Stall target, µs per second. */
  targetUs: number;
  /** Bytes; 0 when not given. */
  min: number;
  max?: number;
  /** linux.resources.memory.limit of the caller's spec, bytes. */
  callerLimit?: number;
}

/**
 * "5000" or "5000us" (µs of stall per second), "5ms", or "0.5%" of the time;
 * from 0.01% to 50%.
 */
export function parsePressure(value: string, source = PRESSURE_ANNOTATION): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%|us|µs|ms)?\s*$/.exec(value);
  const n = m ? Number(m[1]) : NaN;
  const us = m?.[2] === '%' ? n * 10_000 : m?.[2] === 'ms' ? n * 1000 : n;
  if (!Number.isFinite(us) || us < MIN_TARGET_US || us > MAX_TARGET_US) {
    throw new HyperboxError('E_ANNOTATION', `bad ${source} value ${JSON.stringify(value)}: expected a stall target from 0.01% to 50%, as a percent (0.5%) or microseconds per second (5000us)`);
  }
  return Math.round(us);
}

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** "512m", "1G", "1GiB", "256Mi", "64k" (binary, as docker --memory) or bytes; at least 1 MiB. */
export function parseBytes(value: string, source: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b?)\s*$/i.exec(value);
  const n = m ? Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(n) || n < MIN_BYTES) {
    throw new HyperboxError('E_ANNOTATION', `bad ${source} value ${JSON.stringify(value)}: expected a size of at least 1M, e.g. 256M or 2G`);
  }
  return n;
}

/** linux.resources.memory.limit, when the caller set a positive one. */
export function callerMemoryLimit(spec: Readonly<JsonObject>): number | undefined {
  const linux = isJsonObject(spec.linux) ? spec.linux : undefined;
  const resources = linux && isJsonObject(linux.resources) ? linux.resources : undefined;
  const memory = resources && isJsonObject(resources.memory) ? resources.memory : undefined;
  const limit = memory?.limit;
  return typeof limit === 'number' && limit > 0 ? limit : undefined;
}

export function planTune(annotations: Readonly<Record<string, string>>, spec: Readonly<JsonObject>): TuneOptions | undefined {
  for (const key of Object.keys(annotations)) {
    if ((key === ANNOTATION || key.startsWith(ANNOTATION + '.')) && !KEYS.includes(key)) {
      throw new HyperboxError('E_ANNOTATION', `unknown annotation ${key}: tuning takes ${KEYS.join(', ')}`);
    }
  }
  const value = annotations[ANNOTATION];
  if (value === undefined) {
    for (const key of KEYS.slice(1)) {
      if (annotations[key] !== undefined) throw new HyperboxError('E_ANNOTATION', `${key} needs ${ANNOTATION}=memory beside it`);
    }
    return undefined;
  }
  if (value.trim() !== 'memory') {
    throw new HyperboxError('E_ANNOTATION', `bad ${ANNOTATION} value ${JSON.stringify(value)}: the one resource that can be tuned is memory`);
  }
  const targetUs = annotations[PRESSURE_ANNOTATION] === undefined ? DEFAULT_TARGET_US : parsePressure(annotations[PRESSURE_ANNOTATION]);
  const min = annotations[MIN_ANNOTATION] === undefined ? 0 : parseBytes(annotations[MIN_ANNOTATION], MIN_ANNOTATION);
  const max = annotations[MAX_ANNOTATION] === undefined ? undefined : parseBytes(annotations[MAX_ANNOTATION], MAX_ANNOTATION);
  if (max !== undefined && max < min) {
    throw new HyperboxError('E_ANNOTATION', `${MIN_ANNOTATION} (${annotations[MIN_ANNOTATION]}) is above ${MAX_ANNOTATION} (${annotations[MAX_ANNOTATION]}): the bounds are empty`);
  }
  const callerLimit = callerMemoryLimit(spec);
  if (callerLimit !== undefined && min > callerLimit) {
    throw new HyperboxError('E_ANNOTATION', `${MIN_ANNOTATION} (${annotations[MIN_ANNOTATION]}) is above the container's own memory limit (linux.resources.memory.limit, ${callerLimit} bytes)`);
  }
  return { resource: 'memory', targetUs, min, ...(max !== undefined ? { max } : {}), ...(callerLimit !== undefined ? { callerLimit } : {}) };
}

export function tuneFeature(deps: { native: () => Native } = { native: loadNative }): Feature<TuneOptions> {
  const flag = (name: string, key: string, description: string) => ({
    names: [name],
    value: true,
    commands: ['run', 'create'] as ('run' | 'create')[],
    description,
    toAnnotations: (v: string | boolean) => ({ [key]: String(v) }),
  });
  return {
    name: 'tune',
    annotationPrefix: ANNOTATION,
    flags: [
      flag('tune', ANNOTATION, 'tune this container with its memory pressure (PSI): memory'),
      flag('tune-pressure', PRESSURE_ANNOTATION, 'the stall target, e.g. 0.5% (default) or 5000us per second'),
      flag('tune-min', MIN_ANNOTATION, 'never tune the container below this size, e.g. 64M'),
      flag('tune-max', MAX_ANNOTATION, 'never let the tuner give it more than this, e.g. 2G'),
    ],

    plan: (input) => planTune(input.annotations, input.spec),

    stages: () => ['createRuntime', 'poststop'],

    hooks: {
      async createRuntime(ctx) {
        const { registerContainer } = await import('./hooks.js');
        registerContainer(deps.native(), ctx);
      },
      async poststop(ctx) {
        const { unregisterContainer } = await import('./hooks.js');
        unregisterContainer(ctx);
      },
    },

    commands: [tuneCommands(deps)],

    async doctor(): Promise<DoctorLine[]> {
      const { cgroup2Mount, psiAvailable, readOr } = await import('../../kernel/probes.js');
      const psi = psiAvailable();
      const v2 = cgroup2Mount();
      const v1 = existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes');
      const memoryV2 = v2 !== undefined && /\bmemory\b/.test(readOr(`${v2}/cgroup.controllers`));
      return [
        { check: 'PSI for tuning', ok: psi && v2 !== undefined, detail: `/proc/pressure ${psi ? 'yes' : 'no'}, cgroup v2 ${v2 ?? 'not mounted'}`, consequence: 'tuned containers run untuned, with a warning' },
        {
          check: 'memory controller for tuning',
          ok: v1 || memoryV2,
          detail: memoryV2 ? 'cgroup v2 (memory.reclaim, else memory.high)' : v1 ? 'cgroup v1 (memory.limit_in_bytes lowered, then put back)' : 'none',
          consequence: 'tuned containers run untuned, with a warning',
        },
      ];
    },
  };
}


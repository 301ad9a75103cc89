/**
 * The part of the OCI runtime spec (config.json) hyperbox reads or writes.
 * Every object is passthrough: fields hyperbox does not know are the caller's
 * and are kept. Numbers accept what the lossless parser yields (number,
 * bigint for 64-bit values, RawNumber for literals kept as written).
 */
import { z, type TypeOf } from './zod.js';
import { RawNumber } from '../src/oci/json.js';

/** Any JSON number as src/oci/json.ts parses it. */
export const jsonNumber = z.union([z.number(), z.bigint(), z.instanceof(RawNumber)]);

/** An OCI hook entry: an absolute path, its argv, env and timeout. */
export const hookSchema = z
  .object({
    path: z.string().startsWith('/', 'a hook path must be absolute'),
    args: z.array(z.string()).optional(),
    env: z.array(z.string()).optional(),
    timeout: jsonNumber.optional(),
  })
  .passthrough();

/** Hook stages runc 1.1 runs. */
export const HOOK_STAGES = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;
export type HookStage = (typeof HOOK_STAGES)[number];

export const hooksSchema = z.object(Object.fromEntries(HOOK_STAGES.map((s) => [s, z.array(hookSchema).optional()]))).passthrough();

/** linux.seccomp as runc takes it. */
export const seccompSchema = z
  .object({
    defaultAction: z.string(),
    defaultErrnoRet: jsonNumber.optional(),
    architectures: z.array(z.string()).optional(),
    flags: z.array(z.string()).optional(),
    listenerPath: z.string().optional(),
    syscalls: z
      .array(
        z
          .object({
            names: z.array(z.string()),
            action: z.string(),
            errnoRet: jsonNumber.optional(),
            args: z.array(z.object({ index: jsonNumber, value: jsonNumber, valueTwo: jsonNumber.optional(), op: z.string() }).passthrough()).optional(),
          })
          .passthrough(),
      )
      .optional(),
  })
  .passthrough();

/** The runtime spec subset; the rest of config.json passes through untouched. */
export const specSchema = z
  .object({
    ociVersion: z.string({ required_error: 'ociVersion is required' }),
    process: z
      .object({
        terminal: z.boolean().optional(),
        args: z.array(z.string()).optional(),
        env: z.array(z.string()).optional(),
        cwd: z.string().optional(),
      })
      .passthrough()
      .optional(),
    root: z.object({ path: z.string(), readonly: z.boolean().optional() }).passthrough().optional(),
    hostname: z.string().optional(),
    mounts: z.array(z.object({ destination: z.string() }).passthrough()).optional(),
    hooks: hooksSchema.optional(),
    annotations: z.record(z.string(), z.string({ invalid_type_error: 'annotation values must be strings' })).optional(),
    linux: z
      .object({
        cgroupsPath: z.string().optional(),
        resources: z
          .object({ memory: z.object({ limit: jsonNumber.optional(), reservation: jsonNumber.optional(), swap: jsonNumber.optional() }).passthrough().optional() })
          .passthrough()
          .optional(),
        seccomp: seccompSchema.optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();

export type Spec = TypeOf<typeof specSchema>;

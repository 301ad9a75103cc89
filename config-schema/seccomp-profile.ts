/**
 * What the profile store keeps beside each seccomp profile: the syscalls
 * learned per architecture (with counts, so several runs merge), the numbers
 * libseccomp could not name, and the provenance of every run.
 */
import { z, type TypeOf } from './zod.js';

/** Syscall name (or number, when unresolved) to how often it was seen. */
const countsSchema = z.record(z.string(), z.number().int().nonnegative());

/** One learning run. */
export const learnRunSchema = z
  .object({
    date: z.string(),
    containerId: z.string(),
    kernel: z.string(),
    arch: z.string(),
    runc: z.string(),
    command: z.array(z.string()),
    syscalls: z.number().int().nonnegative(),
  })
  .strict();

export const profileMetaSchema = z
  .object({
    version: z.literal(1),
    name: z.string(),
    source: z.enum(['learned', 'imported']),
    /** Architecture (x86_64, x86, x32) to syscall name to count. Compat calls stay under their own architecture. */
    syscalls: z.record(z.string(), countsSchema).default({}),
    /** Architecture to syscall number to count, for numbers libseccomp has no name for (they cannot be allowed). */
    unresolved: z.record(z.string(), countsSchema).default({}),
    runs: z.array(learnRunSchema).default([]),
    created: z.string(),
    updated: z.string(),
  })
  .strict();

export type ProfileMeta = TypeOf<typeof profileMetaSchema>;
export type LearnRun = TypeOf<typeof learnRunSchema>;

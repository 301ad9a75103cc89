/**
 * A test-only feature that exercises every plug point of the Feature
 * interface and records what it saw, so plumbing tests can assert on it:
 *   io.hyperbox.test=VALUE        adds HYPERBOX_TEST_VALUE=VALUE to the container's env
 *   io.hyperbox.test.fail=STAGE   throws in modify or createRuntime
 *   --test-value VALUE            the same request as a run/create flag
 * Hook calls are recorded as JSON lines in $HYPERBOX_TEST_RECORD/<id>.jsonl.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z, type TypeOf } from '../../config-schema/zod.js';
import { HyperboxError } from '../../src/errors.js';
import type { Feature, HookContext } from '../../src/features/types.js';
import { isJsonObject } from '../../src/oci/json.js';

const optionsSchema = z.object({
  value: z.string().regex(/^[a-z0-9-]+$/, 'io.hyperbox.test must be lowercase letters, digits and dashes'),
  fail: z.enum(['none', 'modify', 'createRuntime']).default('none'),
});
type ProbeOptions = TypeOf<typeof optionsSchema>;

function record(ctx: HookContext<ProbeOptions>): void {
  const dir = process.env.HYPERBOX_TEST_RECORD;
  if (!dir) return;
  const id = ctx.plan.id;
  let cgroup: string | undefined;
  if (ctx.state?.pid) {
    try {
      cgroup = readFileSync(`/proc/${ctx.state.pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
    } catch {
      cgroup = undefined;
    }
  }
  const line = { stage: ctx.stage, id, status: ctx.state?.status ?? null, pid: ctx.state?.pid ?? null, cgroup, options: ctx.options, annotations: ctx.state?.annotations ?? null };
  appendFileSync(join(dir, `${id}.jsonl`), JSON.stringify(line) + '\n');
}

export const probeFeature: Feature<ProbeOptions> = {
  name: 'probe',
  annotationPrefix: 'io.hyperbox.test',
  flags: [
    {
      names: ['test-value'],
      value: true,
      commands: ['run', 'create'],
      description: 'test-only: ask the probe feature for VALUE',
      toAnnotations: (v) => ({ 'io.hyperbox.test': String(v) }),
    },
  ],
  plan(input) {
    const value = input.annotations['io.hyperbox.test'];
    if (value === undefined) return undefined;
    const parsed = optionsSchema.safeParse({ value, fail: input.annotations['io.hyperbox.test.fail'] });
    if (!parsed.success) throw new HyperboxError('E_ANNOTATION', `bad probe annotation: ${parsed.error.issues[0]!.message}`);
    return parsed.data;
  },
  modify(spec, options) {
    if (options.fail === 'modify') throw new HyperboxError('E_TEST', 'probe was asked to fail in modify');
    const proc = isJsonObject(spec.process) ? spec.process : (spec.process = {});
    const env = Array.isArray(proc.env) ? proc.env : (proc.env = []);
    env.push(`HYPERBOX_TEST_VALUE=${options.value}`);
  },
  hooks: {
    createRuntime(ctx) {
      record(ctx);
      if (ctx.options.fail === 'createRuntime') throw new HyperboxError('E_TEST', 'probe was asked to fail in createRuntime');
    },
    poststart: record,
    poststop: record,
  },
};

/**
 * The tuning request's grammar: io.hyperbox.tune=memory and its pressure / min / max keys, what
 * they parse to, and every refusal as one sentence naming the key and the bad value.
 */
import t, { type Test } from 'tap';
import { HyperboxError } from '../../../src/errors.js';
import {
  ANNOTATION,
  callerMemoryLimit,
  DEFAULT_TARGET_US,
  MAX_ANNOTATION,
  MIN_ANNOTATION,
  parseBytes,
  parsePressure,
  planTune,
  PRESSURE_ANNOTATION,
  tuneFeature,
  type TuneOptions,
} from '../../../src/features/tune/index.js';
import type { JsonObject } from '../../../src/oci/json.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

const spec = (limit?: unknown): JsonObject => (limit === undefined ? { ociVersion: '1.0.2' } : ({ linux: { resources: { memory: { limit } } } } as JsonObject));

/** The error fn throws: a HyperboxError E_ANNOTATION whose one-sentence message names every part given. */
function refusal(t: Test, fn: () => unknown, ...parts: string[]): string {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof HyperboxError)) {
    t.fail(`expected a HyperboxError, got ${caught === undefined ? 'no error' : String(caught)}`);
    return '';
  }
  t.equal(caught.code, 'E_ANNOTATION', 'code E_ANNOTATION');
  for (const p of parts) t.ok(caught.message.includes(p), `message names ${p}: ${caught.message}`);
  t.notMatch(caught.message, /\n/, 'one line');
  t.notMatch(caught.message, /[.!?]\s+[A-Z]/, 'one sentence');
  return caught.message;
}

t.test('parsePressure: percent, microseconds and milliseconds, all to µs per second', async (t) => {
  const cases: [string, number][] = [
    ['0.5%', 5000],
    ['5000', 5000],
    ['5000us', 5000],
    ['5000µs', 5000],
    ['5ms', 5000],
    [' 2.5 ms ', 2500],
    ['1%', 10_000],
    ['0.01%', 100], // the lowest target
    ['50%', 500_000], // the highest
    ['100', 100],
    ['500000us', 500_000],
    ['0.25ms', 250],
    ['1234.6', 1235], // rounded to whole µs
  ];
  for (const [text, us] of cases) t.equal(parsePressure(text), us, `${JSON.stringify(text)} -> ${us} µs/s`);
});

t.test('parsePressure: refuses what is not a stall target from 0.01% to 50%', async (t) => {
  for (const bad of ['', 'abc', '99', '99us', '0.009%', '0', '0%', '50.1%', '500001', '501ms', '-5', '-0.5%', '5s', '1e4', '5 000', '%', 'ms', '5%%', '0x10']) {
    t.test(JSON.stringify(bad), async (t) => {
      refusal(t, () => parsePressure(bad), PRESSURE_ANNOTATION, JSON.stringify(bad));
    });
  }
  t.test('the source named in the message is the one given', async (t) => {
    refusal(t, () => parsePressure('9', '--tune-pressure'), '--tune-pressure', '"9"');
  });
});

t.test('parseBytes: binary units as docker --memory, bytes, at least 1 MiB', async (t) => {
  const cases: [string, number][] = [
    ['64M', 64 * MiB],
    ['64m', 64 * MiB],
    ['1G', GiB],
    ['1GiB', GiB],
    ['1gib', GiB],
    ['1GB', GiB],
    ['256Mi', 256 * MiB],
    ['1024k', MiB],
    ['2048KiB', 2 * MiB],
    ['1T', 1024 ** 4],
    ['1.5G', 1.5 * GiB],
    ['1048576', MiB], // the smallest size taken
    ['3000000', 3_000_000],
    [' 512 M ', 512 * MiB],
  ];
  for (const [text, bytes] of cases) t.equal(parseBytes(text, MIN_ANNOTATION), bytes, `${JSON.stringify(text)} -> ${bytes}`);
});

t.test('parseBytes: refuses sizes under 1 MiB and what is not a size', async (t) => {
  for (const bad of ['', 'M', '1048575', '1023k', '0.5M', '0', '-64M', '64X', '64MM', '64 MB extra', '1e9', '12,5M', 'lots']) {
    t.test(JSON.stringify(bad), async (t) => {
      refusal(t, () => parseBytes(bad, MAX_ANNOTATION), MAX_ANNOTATION, JSON.stringify(bad));
    });
  }
});

t.test('callerMemoryLimit: a positive linux.resources.memory.limit, else undefined', async (t) => {
  t.equal(callerMemoryLimit(spec(512 * MiB)), 512 * MiB);
  t.equal(callerMemoryLimit(spec()), undefined, 'no linux section');
  t.equal(callerMemoryLimit(spec(0)), undefined, '0 is no limit');
  t.equal(callerMemoryLimit(spec(-1)), undefined, '-1 is no limit');
  t.equal(callerMemoryLimit(spec('512M')), undefined, 'a string is not a limit');
  t.equal(callerMemoryLimit({ linux: { resources: {} } } as JsonObject), undefined, 'no memory section');
  t.equal(callerMemoryLimit({ linux: { resources: { memory: { reservation: MiB } } } } as JsonObject), undefined, 'a reservation only');
  t.equal(callerMemoryLimit({ linux: null } as unknown as JsonObject), undefined, 'linux: null');
});

t.test('planTune: nothing asked, nothing planned', async (t) => {
  t.equal(planTune({}, spec()), undefined);
  t.equal(planTune({ 'io.hyperbox.trace': 'syscalls', 'org.opencontainers.image.title': 'x', 'io.hyperbox.tuner': 'x' }, spec()), undefined, 'other keys (io.hyperbox.tuner is not a tune sub-key) are not ours');
});

t.test('planTune: defaults', async (t) => {
  const plan = planTune({ [ANNOTATION]: 'memory' }, spec());
  t.strictSame(plan, { resource: 'memory', targetUs: DEFAULT_TARGET_US, min: 0 } satisfies TuneOptions, 'target 0.5%, no min, no max, no caller limit');
  t.equal(DEFAULT_TARGET_US, 5000, 'the default target is 0.5% of the time');
  t.ok(plan && !('max' in plan) && !('callerLimit' in plan), 'absent bounds are absent keys, not undefined values');
  t.strictSame(planTune({ [ANNOTATION]: ' memory\n' }, spec()), { resource: 'memory', targetUs: 5000, min: 0 }, 'surrounding space is fine');
});

t.test('planTune: every key given', async (t) => {
  const plan = planTune({ [ANNOTATION]: 'memory', [PRESSURE_ANNOTATION]: '2%', [MIN_ANNOTATION]: '64M', [MAX_ANNOTATION]: '1GiB' }, spec(2 * GiB));
  t.strictSame(plan, { resource: 'memory', targetUs: 20_000, min: 64 * MiB, max: GiB, callerLimit: 2 * GiB });
});

t.test('planTune: bounds that touch are fine; max above the caller limit is fine (the ceiling takes the lower)', async (t) => {
  t.strictSame(planTune({ [ANNOTATION]: 'memory', [MIN_ANNOTATION]: '256M', [MAX_ANNOTATION]: '256Mi' }, spec()), { resource: 'memory', targetUs: 5000, min: 256 * MiB, max: 256 * MiB });
  t.strictSame(planTune({ [ANNOTATION]: 'memory', [MIN_ANNOTATION]: '512M' }, spec(512 * MiB)), { resource: 'memory', targetUs: 5000, min: 512 * MiB, callerLimit: 512 * MiB }, 'min equal to the caller limit');
  t.strictSame(planTune({ [ANNOTATION]: 'memory', [MAX_ANNOTATION]: '4G' }, spec(GiB)), { resource: 'memory', targetUs: 5000, min: 0, max: 4 * GiB, callerLimit: GiB });
});

t.test('planTune: refusals', async (t) => {
  t.test('an unknown io.hyperbox.tune.* key', async (t) => {
    const msg = refusal(t, () => planTune({ [ANNOTATION]: 'memory', 'io.hyperbox.tune.target': '1%' }, spec()), 'io.hyperbox.tune.target');
    t.match(msg, PRESSURE_ANNOTATION, 'and says which keys there are');
  });
  t.test('an unknown key is refused even without the main one', async (t) => {
    refusal(t, () => planTune({ 'io.hyperbox.tune.cpu': 'yes' }, spec()), 'io.hyperbox.tune.cpu');
  });
  for (const key of [PRESSURE_ANNOTATION, MIN_ANNOTATION, MAX_ANNOTATION]) {
    t.test(`${key} without ${ANNOTATION}`, async (t) => {
      const value = key === PRESSURE_ANNOTATION ? '1%' : '64M';
      const msg = refusal(t, () => planTune({ [key]: value }, spec()), key);
      t.match(msg, `${ANNOTATION}=memory`, 'and says what it needs');
    });
  }
  for (const value of ['cpu', 'Memory', 'memory,cpu', '', 'true']) {
    t.test(`${ANNOTATION}=${JSON.stringify(value)}`, async (t) => {
      refusal(t, () => planTune({ [ANNOTATION]: value }, spec()), ANNOTATION, JSON.stringify(value));
    });
  }
  t.test('a bad pressure', async (t) => {
    refusal(t, () => planTune({ [ANNOTATION]: 'memory', [PRESSURE_ANNOTATION]: '60%' }, spec()), PRESSURE_ANNOTATION, '"60%"');
  });
  t.test('a bad min', async (t) => {
    refusal(t, () => planTune({ [ANNOTATION]: 'memory', [MIN_ANNOTATION]: '512k' }, spec()), MIN_ANNOTATION, '"512k"');
  });
  t.test('a bad max', async (t) => {
    refusal(t, () => planTune({ [ANNOTATION]: 'memory', [MAX_ANNOTATION]: 'big' }, spec()), MAX_ANNOTATION, '"big"');
  });
  t.test('min above max', async (t) => {
    refusal(t, () => planTune({ [ANNOTATION]: 'memory', [MIN_ANNOTATION]: '2G', [MAX_ANNOTATION]: '1G' }, spec()), MIN_ANNOTATION, MAX_ANNOTATION, '2G', '1G');
  });
  t.test('min above max by one byte', async (t) => {
    refusal(t, () => planTune({ [ANNOTATION]: 'memory', [MIN_ANNOTATION]: '1048577', [MAX_ANNOTATION]: '1M' }, spec()), MIN_ANNOTATION, '1048577');
  });
  t.test('min above the caller limit', async (t) => {
    refusal(t, () => planTune({ [ANNOTATION]: 'memory', [MIN_ANNOTATION]: '1G' }, spec(512 * MiB)), MIN_ANNOTATION, '1G', 'linux.resources.memory.limit', String(512 * MiB));
  });
});

t.test('the feature: flags become the annotations plan reads', async (t) => {
  const f = tuneFeature({ native: () => t.fail('no native needed to plan') as never });
  t.equal(f.annotationPrefix, ANNOTATION);
  const byName = new Map((f.flags ?? []).map((fl) => [fl.names[0], fl]));
  t.strictSame([...byName.keys()].sort(), ['tune', 'tune-max', 'tune-min', 'tune-pressure']);
  const annotations = Object.assign({}, byName.get('tune')!.toAnnotations('memory'), byName.get('tune-pressure')!.toAnnotations('1ms'), byName.get('tune-min')!.toAnnotations('64M'), byName.get('tune-max')!.toAnnotations('1G'));
  t.strictSame(annotations, { [ANNOTATION]: 'memory', [PRESSURE_ANNOTATION]: '1ms', [MIN_ANNOTATION]: '64M', [MAX_ANNOTATION]: '1G' });
  const plan = f.plan({ command: 'create', id: 'c1', bundleDir: '/nonexistent', annotations, fromFlags: annotations, spec: spec(8 * GiB) });
  t.strictSame(plan, { resource: 'memory', targetUs: 1000, min: 64 * MiB, max: GiB, callerLimit: 8 * GiB });
  t.strictSame(f.stages!(plan!), ['createRuntime', 'poststop']);
  t.equal(f.plan({ command: 'run', id: 'c1', bundleDir: '/nonexistent', annotations: {}, fromFlags: {}, spec: spec() }), undefined);
});

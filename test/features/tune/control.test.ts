/**
 * The control law, as properties over many generated inputs and as exact values at the
 * points that define it: the first step, a quadratic probe under the target, a quadratic
 * backoff over it (a fired trigger counting as 1.5x), the floor and the ceiling, what is worth
 * reclaiming, and which io stall counts.
 */
import t from 'tap';
import { controlStep, DEFAULT_CONTROL, effectiveStall, MIN_RECLAIM, type ControlConfig, type ControlInput } from '../../../src/features/tune/control.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const cfg: ControlConfig = { ...DEFAULT_CONTROL, targetUs: 5000 };

/** A deterministic stand-in for Math.random. */
function prng(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

function input(over: Partial<ControlInput> = {}): ControlInput {
  return { stallUs: 0, triggered: false, current: 1 * GiB, unreclaimable: 100 * MiB, limit: 1 * GiB, min: 0, ceiling: 8 * GiB, ...over };
}

/** Generated inputs covering every branch: first steps, stalls from 0 to 5x the target, triggers, tight and loose bounds. */
function* cases(n: number, seed = 1): Generator<{ cfg: ControlConfig; in: ControlInput }> {
  const r = prng(seed);
  for (let i = 0; i < n; i++) {
    const c: ControlConfig = {
      targetUs: Math.round(100 + r() * 50_000),
      probeStep: 0.01 + r() * 0.2,
      backoffGain: 0.05 + r() * 1,
      maxBackoff: 0.1 + r() * 2,
      floorBytes: Math.round(r() * 64 * MiB),
    };
    const current = Math.round(r() * 4 * GiB);
    const unreclaimable = Math.round(current * r());
    const ceiling = r() < 0.2 ? Math.round(r() * 256 * MiB) : Math.round(r() * 8 * GiB) + 1;
    const stallKind = r();
    const stallUs = stallKind < 0.15 ? 0 : stallKind < 0.2 ? c.targetUs : Math.round(r() * 5 * c.targetUs);
    yield {
      cfg: c,
      in: {
        stallUs,
        triggered: r() < 0.15,
        current,
        unreclaimable,
        limit: r() < 0.15 ? undefined : Math.round(r() * 6 * GiB),
        min: r() < 0.5 ? 0 : Math.round(r() * 2 * GiB),
        ceiling,
        ...(r() < 0.1 ? { budgetHit: true, inactiveFile: Math.round(r() * (current - unreclaimable)) } : {}),
      },
    };
  }
}

const floorOf = (c: ControlConfig, i: ControlInput) => Math.min(Math.max(1, i.ceiling), Math.max(i.min, i.unreclaimable + c.floorBytes));

t.test('the first step starts at the current size, clamped', async (t) => {
  const s = controlStep(cfg, input({ limit: undefined, stallUs: 1e6, triggered: true }));
  t.strictSame(s, { limit: GiB, floor: 116 * MiB, excess: 0, action: 'start' }, 'neither stall nor trigger count at the first step');
  const low = controlStep(cfg, input({ limit: undefined, current: 50 * MiB, unreclaimable: 40 * MiB }));
  t.strictSame(low, { limit: 56 * MiB, floor: 56 * MiB, excess: 0, action: 'start' }, 'raised to the floor: nothing to reclaim');
  const high = controlStep(cfg, input({ limit: undefined, current: 3 * GiB, ceiling: 2 * GiB }));
  t.strictSame(high, { limit: 2 * GiB, floor: 116 * MiB, excess: GiB, action: 'start' }, 'cut to the ceiling: the excess is what is above it');
});

t.test('under the target: a probe down from min(limit, current) by probeStep*(1-stall/target)^2', async (t) => {
  const at = (stallUs: number, over: Partial<ControlInput> = {}) => controlStep(cfg, input({ stallUs, ...over }));
  const zero = at(0);
  t.equal(zero.action, 'probe');
  t.equal(zero.limit, Math.round(GiB * 0.95), 'no stall: the full 5% step');
  t.equal(zero.excess, GiB - zero.limit, 'the step is what to reclaim');
  t.equal(at(2500).limit, Math.round(GiB * (1 - 0.05 * 0.25)), 'half the target: a quarter of the step');
  t.equal(at(4500).limit, Math.round(GiB * (1 - 0.05 * 0.01)), '90% of the target: a hundredth of the step');
  t.equal(at(0, { limit: 2 * GiB }).limit, Math.round(GiB * 0.95), 'from current when the limit is above it');
  t.equal(at(0, { limit: 512 * MiB }).limit, Math.round(512 * MiB * 0.95), 'from the limit when current is above it');
  t.equal(at(0, { limit: 512 * MiB }).excess, GiB - Math.round(512 * MiB * 0.95), 'then all above the new limit is excess');
  // quadratic, not linear: the share at stall s, over the share at 0, is (1 - s/target)^2
  const share = (s: number) => 1 - at(s, { current: 100 * GiB, limit: 100 * GiB, ceiling: 200 * GiB }).limit / (100 * GiB);
  for (const x of [0.1, 0.3, 0.5, 0.7, 0.9]) t.ok(Math.abs(share(x * 5000) / share(0) - (1 - x) ** 2) < 1e-6, `share at ${x} of the target is (1-${x})^2 of the full step`);
  t.ok(share(4900) < share(0) / 1000, 'near the target almost nothing');
});

t.test('a small probe step is a hold: nothing worth reclaiming', async (t) => {
  const s = controlStep(cfg, input({ stallUs: 4990, current: GiB, limit: GiB }));
  t.ok(GiB - s.limit < MIN_RECLAIM, `the step (${GiB - s.limit} B) is under MIN_RECLAIM`);
  t.equal(s.excess, 0);
  t.equal(s.action, 'hold');
  t.ok(s.limit < GiB, 'the limit still moves down by the small step');
  const edge = controlStep({ ...cfg, probeStep: MIN_RECLAIM / (100 * MiB) }, input({ current: 100 * MiB, limit: 100 * MiB, unreclaimable: 0 }));
  t.equal(edge.excess, MIN_RECLAIM, 'exactly MIN_RECLAIM is reclaimed');
  t.equal(edge.action, 'probe');
  const below = controlStep({ ...cfg, probeStep: (MIN_RECLAIM - 4096) / (100 * MiB) }, input({ current: 100 * MiB, limit: 100 * MiB, unreclaimable: 0 }));
  t.strictSame([below.excess, below.action], [0, 'hold'], 'a page less is not');
  const atFloor = controlStep(cfg, input({ current: 116 * MiB, limit: 116 * MiB }));
  t.strictSame(atFloor, { limit: 116 * MiB, floor: 116 * MiB, excess: 0, action: 'hold' }, 'at the floor: hold');
});

t.test('over the target: a backoff up from max(limit, current) by min(maxBackoff, backoffGain*(stall/target)^2)', async (t) => {
  const at = (stallUs: number, over: Partial<ControlInput> = {}) => controlStep(cfg, input({ stallUs, ...over }));
  const just = at(5001);
  t.equal(just.action, 'backoff');
  t.equal(just.limit, Math.round(GiB * (1 + 0.25 * (5001 / 5000) ** 2)), 'just over: 25%');
  t.equal(just.excess, 0, 'a backoff reclaims nothing when current is under the new limit');
  t.equal(at(7500).limit, Math.round(GiB * (1 + 0.25 * 2.25)), '1.5x the target: 56%');
  t.equal(at(10_000).limit, 2 * GiB, '2x the target: doubles (the cap)');
  t.equal(at(50_000).limit, 2 * GiB, '10x the target: still doubles, never more');
  t.equal(at(10_000, { limit: 3 * GiB }).limit, 6 * GiB, 'from the limit when it is above current');
  t.equal(at(10_000, { limit: 256 * MiB }).limit, 2 * GiB, 'from current when it is above the limit');
  t.equal(controlStep({ ...cfg, maxBackoff: 0.5 }, input({ stallUs: 10_000 })).limit, Math.round(GiB * 1.5), 'maxBackoff caps the share');
  t.equal(at(5000).action, 'hold', 'exactly at the target is not over it (a zero probe step)');
  t.equal(at(5000).limit, GiB);
});

t.test('a fired trigger counts as at least 1.5x over the target', async (t) => {
  const trig = (stallUs: number) => controlStep(cfg, input({ stallUs, triggered: true }));
  for (const s of [0, 1000, 5000, 7500]) {
    const step = trig(s);
    t.equal(step.action, 'backoff', `stall ${s}: backoff`);
    t.equal(step.limit, Math.round(GiB * (1 + 0.25 * 1.5 ** 2)), `stall ${s}: as 1.5x`);
  }
  t.equal(trig(9000).limit, Math.round(GiB * (1 + 0.25 * 1.8 ** 2)), 'a larger measured stall wins');
  t.equal(trig(20_000).limit, 2 * GiB);
});

t.test('giving back is much faster than taking: backoff at target*(1+d) against probe at target*(1-d)', async (t) => {
  for (const d of [0.01, 0.1, 0.25, 0.5, 0.75, 0.99]) {
    const base = input({ current: 10 * GiB, limit: 10 * GiB, unreclaimable: 0, ceiling: 100 * GiB });
    const up = controlStep(cfg, { ...base, stallUs: 5000 * (1 + d) }).limit - 10 * GiB;
    const down = 10 * GiB - controlStep(cfg, { ...base, stallUs: 5000 * (1 - d) }).limit;
    t.ok(up > 0 && down > 0, `d=${d}: both move`);
    t.ok(up >= 10 * down, `d=${d}: backoff ${up} B is at least 10x the probe ${down} B`);
  }
});

t.test('floor and ceiling', async (t) => {
  const s = controlStep(cfg, input({ current: 200 * MiB, limit: 200 * MiB, unreclaimable: 190 * MiB }));
  t.equal(s.floor, 206 * MiB, 'floor = unreclaimable + floorBytes');
  t.equal(s.limit, 206 * MiB, 'the probe stops at the floor (above current)');
  t.strictSame([s.excess, s.action], [0, 'hold']);
  const min = controlStep(cfg, input({ min: 900 * MiB, current: 920 * MiB, limit: 920 * MiB }));
  t.equal(min.floor, 900 * MiB, 'tune.min when above');
  t.equal(min.limit, 900 * MiB, 'the probe stops at tune.min');
  t.equal(min.excess, 20 * MiB);
  const capped = controlStep(cfg, input({ min: 3 * GiB, ceiling: 2 * GiB }));
  t.equal(capped.floor, 2 * GiB, 'the floor is capped at the ceiling');
  t.equal(capped.limit, 2 * GiB);
  const hot = controlStep(cfg, input({ unreclaimable: 4 * GiB, current: 4 * GiB, ceiling: 3 * GiB }));
  t.equal(hot.floor, 3 * GiB, 'unreclaimable above the ceiling: floor at the ceiling');
  t.equal(hot.limit, 3 * GiB);
  const up = controlStep(cfg, input({ stallUs: 20_000, limit: 3 * GiB, ceiling: 4 * GiB }));
  t.equal(up.limit, 4 * GiB, 'a backoff stops at the ceiling');
  const over = controlStep(cfg, input({ stallUs: 20_000, current: 5 * GiB, limit: 5 * GiB, ceiling: 4 * GiB }));
  t.strictSame([over.limit, over.excess, over.action], [4 * GiB, GiB, 'backoff'], 'a backoff under a lowered ceiling still names the excess above it');
  const zero = controlStep(cfg, input({ ceiling: 0, limit: undefined }));
  t.equal(zero.limit, 1, 'a ceiling of 0 is taken as 1 byte, never a negative or zero limit');
});

t.test('properties over 20000 generated steps', async (t) => {
  const bad: string[] = [];
  const check = (ok: boolean, what: string, c: { cfg: ControlConfig; in: ControlInput }, got: unknown) => {
    if (!ok && bad.length < 10) bad.push(`${what}: ${JSON.stringify(c)} -> ${JSON.stringify(got)}`);
  };
  let probes = 0;
  let backoffs = 0;
  let holds = 0;
  let starts = 0;
  let budgets = 0;
  for (const c of cases(20_000)) {
    const s = controlStep(c.cfg, c.in);
    const ceiling = Math.max(1, c.in.ceiling);
    const floor = floorOf(c.cfg, c.in);
    check(Number.isInteger(s.limit), 'limit is whole bytes', c, s);
    check(s.floor === floor, 'floor = min(ceiling, max(min, unreclaimable + floorBytes))', c, s);
    check(s.limit >= s.floor && s.limit <= ceiling, 'floor <= limit <= ceiling', c, s);
    check(s.excess === 0 || s.excess >= MIN_RECLAIM, 'excess is 0 or at least MIN_RECLAIM', c, s);
    check(s.excess === 0 || s.excess === c.in.current - s.limit, 'excess is current - limit', c, s);
    check(s.excess > 0 || c.in.current - s.limit < MIN_RECLAIM, 'a reclaim worth doing is never skipped', c, s);
    const ratio = c.in.stallUs / c.cfg.targetUs;
    if (c.in.limit === undefined) {
      starts++;
      check(s.action === 'start' && s.limit === Math.round(Math.min(ceiling, Math.max(floor, c.in.current))), 'start = clamp(current)', c, s);
    } else if (c.in.budgetHit) {
      budgets++;
      check(s.limit === Math.round(Math.min(ceiling, Math.max(floor, c.in.current - (c.in.inactiveFile ?? 0)))), 'a hit budget: current minus the inactive page cache', c, s);
      check(s.action === (s.excess > 0 ? 'probe' : 'hold'), 'a hit budget never backs off', c, s);
    } else if (ratio > 1 || c.in.triggered) {
      backoffs++;
      const from = Math.max(c.in.limit, c.in.current);
      const over = Math.max(ratio, c.in.triggered ? 1.5 : 0);
      const want = Math.round(Math.min(ceiling, Math.max(floor, from * (1 + Math.min(c.cfg.maxBackoff, c.cfg.backoffGain * over * over)))));
      check(s.action === 'backoff' && s.limit === want, 'backoff law', c, s);
      check(s.limit >= Math.min(ceiling, from), 'a backoff never lowers the limit below where it was (unless the ceiling is lower)', c, s);
    } else {
      const from = Math.min(c.in.limit, c.in.current);
      const want = Math.round(Math.min(ceiling, Math.max(floor, from * (1 - c.cfg.probeStep * (1 - ratio) ** 2))));
      check(s.limit === want, 'probe law', c, s);
      check(s.limit >= Math.min(ceiling, Math.max(floor, from * (1 - c.cfg.probeStep))) - 1, 'a probe never takes more than probeStep', c, s);
      check(s.action === (s.excess > 0 ? 'probe' : 'hold'), 'probe when there is something to reclaim, else hold', c, s);
      if (s.action === 'probe') probes++;
      else holds++;
    }
  }
  t.strictSame(bad, [], 'no generated step breaks a property');
  t.ok(starts > 1000 && probes > 1000 && backoffs > 1000 && holds > 100 && budgets > 500, `every branch is exercised (start ${starts}, probe ${probes}, backoff ${backoffs}, hold ${holds}, budget ${budgets})`);
});

t.test('repeated steps: with no stall the limit falls geometrically to the floor and stays; with stall it climbs to the ceiling', async (t) => {
  let current = 2 * GiB;
  let limit: number | undefined;
  const floor = 300 * MiB + cfg.floorBytes;
  let steps = 0;
  for (; steps < 200; steps++) {
    const s = controlStep(cfg, { stallUs: 0, triggered: false, current, unreclaimable: 300 * MiB, limit, min: 0, ceiling: 4 * GiB });
    if (limit !== undefined && s.action !== 'hold') t.ok(s.limit < limit, 'each probe lowers the limit');
    limit = s.limit;
    current -= s.excess; // the reclaim happened
    if (s.action === 'hold') break;
  }
  t.equal(limit, floor, 'at the floor');
  t.ok(steps > 20 && steps < 60, `about log(floor/start)/log(0.95) steps (${steps})`);
  t.equal(current, floor, 'and current with it');
  const held = controlStep(cfg, { stallUs: 0, triggered: false, current, unreclaimable: 300 * MiB, limit, min: 0, ceiling: 4 * GiB });
  t.strictSame([held.limit, held.action], [floor, 'hold'], 'it stays');
  let up = 0;
  for (; up < 20 && limit! < 4 * GiB; up++) limit = controlStep(cfg, { stallUs: 50_000, triggered: false, current, unreclaimable: 300 * MiB, limit, min: 0, ceiling: 4 * GiB }).limit;
  t.equal(limit, 4 * GiB, 'a 10x stall reaches the ceiling');
  t.ok(up <= 4, `in a few doublings (${up})`);
});

t.test('a stall can never make a probe take more than probeStep', async (t) => {
  // A cumulative counter read from a re-created cgroup (or any measuring glitch) can give a
  // negative stall; probeStep is documented as the largest share one probe takes.
  const s = controlStep(cfg, input({ stallUs: -50_000 }));
  t.equal(s.limit, Math.round(GiB * 0.95), `a negative stall is taken as none (limit ${s.limit})`, {
  });
  t.ok(s.limit >= s.floor, 'the floor still holds');
});

t.test('a shared budget that was hit: the inactive page cache goes at once, whatever the stall', async (t) => {
  const hit = (over: Partial<ControlInput>) => controlStep(cfg, input({ budgetHit: true, inactiveFile: 300 * MiB, ...over }));
  const s = hit({});
  t.strictSame(s, { limit: GiB - 300 * MiB, floor: 116 * MiB, excess: 300 * MiB, action: 'probe' }, 'current minus the inactive file pages');
  t.strictSame(hit({ stallUs: 50_000, triggered: true }), s, 'a stall or a trigger does not make it back off (the stall is not the tuner\'s doing)');
  t.strictSame(hit({ inactiveFile: 1000 * MiB }), { limit: 116 * MiB, floor: 116 * MiB, excess: GiB - 116 * MiB, action: 'probe' }, 'never below the floor');
  t.strictSame(hit({ inactiveFile: 100 * 1024 }), { limit: GiB - 100 * 1024, floor: 116 * MiB, excess: 0, action: 'hold' }, 'less than MIN_RECLAIM inactive: hold');
  t.strictSame(hit({ inactiveFile: undefined }), { limit: GiB, floor: 116 * MiB, excess: 0, action: 'hold' }, 'no inactive count: hold at current');
  t.equal(hit({ ceiling: 512 * MiB }).limit, 512 * MiB, 'never above the ceiling');
  t.equal(hit({ limit: undefined }).action, 'start', 'the first step is still the baseline');
});

t.test('effectiveStall: the io stall counts only for refaults, by their share of pages read in', async (t) => {
  t.equal(effectiveStall(1000, 50_000, 0, 100), 1000, 'no refaults: memory stall only');
  t.equal(effectiveStall(1000, 50_000, -3, 100), 1000, 'a counter that went back is no refault');
  t.equal(effectiveStall(1000, 50_000, 25, 100), 1000 + 12_500, 'a quarter of the pages read in were refaults');
  t.equal(effectiveStall(1000, 50_000, 100, 100), 51_000, 'all of them');
  t.equal(effectiveStall(1000, 50_000, 500, 100), 51_000, 'the share is at most 1');
  t.equal(effectiveStall(1000, 50_000, 7, 0), 51_000, 'no pages-in count (cgroup v2): all of the io stall');
  t.equal(effectiveStall(0, 0, 7, 0), 0);
  t.equal(effectiveStall(2000, 0, 50, 100), 2000, 'no io stall adds nothing');
  t.equal(effectiveStall(0, 50_000, 100, 100), 0, 'no memory stall: refaults are a streamer reading, its io stall does not count');
  t.equal(effectiveStall(900_000, 900_000, 100, 100), 1e6, 'never more than all of the time');
});

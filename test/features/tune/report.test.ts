/** The tune report: a history drawn as one SVG, read back here with a tiny tag parser and path reader. */
import t, { type Test } from 'tap';
import type { HistoryHeader, TuneSample } from '../../../src/features/tune/history.js';
import { formatDuration, renderReport } from '../../../src/features/tune/report.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const T0 = 1_740_000_000_000;
const header: HistoryHeader = { containerId: 'web-1', targetUs: 100_000, startedAt: T0 };

function sample(i: number, over: Partial<TuneSample> = {}): TuneSample {
  return { t: T0 + i * 1000, memUs: 20_000, ioUs: 5_000, stallUs: 20_000, current: 500 * MiB, limit: 800 * MiB, floor: 200 * MiB, ceiling: 8 * GiB, given: 0, action: 'hold', ...over };
}

/** A deterministic stand-in for Math.random. */
function prng(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

interface Tag {
  name: string;
  attrs: Record<string, string>;
  close: boolean;
  selfClose: boolean;
}

function parseTag(raw: string): Tag | undefined {
  const m = /^<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>$/.exec(raw);
  if (!m) return undefined;
  const attrs: Record<string, string> = {};
  for (const a of m[3]!.matchAll(/([\w:-]+)="([^"]*)"/g)) attrs[a[1]!] = a[2]!;
  return { name: m[2]!, attrs, close: m[1] === '/', selfClose: m[4] === '/' };
}

/** Problems that would stop an XML parser: bad tags, unbalanced nesting, stray ampersands, more than one root. */
function xmlProblems(svg: string): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  let roots = 0;
  let last = 0;
  for (const m of svg.matchAll(/<[^>]*>/g)) {
    const text = svg.slice(last, m.index);
    last = m.index + m[0].length;
    if (/[<>]/.test(text)) problems.push(`raw < or > in text: ${text.slice(0, 40)}`);
    if (stack.length === 0 && text.trim()) problems.push(`text outside the root: ${text.slice(0, 40)}`);
    const tag = parseTag(m[0]);
    if (!tag) {
      problems.push(`malformed tag: ${m[0].slice(0, 60)}`);
      continue;
    }
    if (tag.close) {
      const open = stack.pop();
      if (open !== tag.name) problems.push(`</${tag.name}> closes <${open}>`);
    } else {
      if (stack.length === 0) roots++;
      if (!tag.selfClose) stack.push(tag.name);
    }
  }
  if (svg.slice(last).trim()) problems.push('text after the root');
  if (stack.length) problems.push(`unclosed: ${stack.join(' ')}`);
  if (roots !== 1) problems.push(`${roots} root elements`);
  for (const m of svg.matchAll(/&[^;\s]*;?/g)) if (!/^&(amp|lt|gt|quot|apos|#\d+);$/.test(m[0])) problems.push(`bad entity ${m[0]}`);
  // characters XML 1.0 cannot hold at all
  if (/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/.test(svg)) problems.push('control character');
  return problems;
}

function checkSvg(t: Test, svg: string): void {
  t.same(xmlProblems(svg), [], 'well-formed XML');
  t.notMatch(svg, /NaN|Infinity|undefined|null/, 'no NaN, Infinity, undefined or null');
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /, 'an SVG root');
}

/** All tags whose class list has `cls`. */
function withClass(svg: string, cls: string): Tag[] {
  return [...svg.matchAll(/<[^/!][^>]*>/g)].map((m) => parseTag(m[0])!).filter((tag) => tag && (tag.attrs.class ?? '').split(' ').includes(cls));
}

/** The markup of one panel ("memory" or "stall"). */
function panel(svg: string, name: string): string {
  const start = svg.indexOf(`<g class="panel ${name}">`);
  const end = svg.indexOf('\n</g>', start);
  return svg.slice(start, end);
}

/** A panel's horizontal gridlines: label and y, bottom first. */
function yTicks(svg: string, name: string): { label: string; y: number }[] {
  return [...panel(svg, name).matchAll(/<g class="ytick"><line [^>]*y1="([^"]+)"[^>]*\/><text[^>]*>([^<]*)<\/text><\/g>/g)].map((m) => ({ label: m[2]!, y: Number(m[1]) }));
}

/** The absolute points of a path using M, L, H, V, h, l and z. */
function pathPoints(d: string): [number, number][] {
  const pts: [number, number][] = [];
  const tokens = d.match(/[MLHVhlz]|-?\d*\.?\d+/g) ?? [];
  let x = 0;
  let y = 0;
  let i = 0;
  const num = () => Number(tokens[i++]);
  while (i < tokens.length) {
    const cmd = tokens[i++];
    if (cmd === 'M' || cmd === 'L') [x, y] = [num(), num()];
    else if (cmd === 'l') [x, y] = [x + num(), y + num()];
    else if (cmd === 'H') x = num();
    else if (cmd === 'h') x += num();
    else if (cmd === 'V') y = num();
    else if (cmd === 'z') continue;
    else throw new Error(`unexpected ${cmd} in ${d.slice(0, 40)}`);
    pts.push([x, y]);
  }
  return pts;
}

function seriesPoints(svg: string, cls: string): [number, number][] {
  const tags = withClass(svg, cls).filter((tag) => tag.name === 'path');
  if (tags.length !== 1) throw new Error(`${tags.length} paths of class ${cls}`);
  return pathPoints(tags[0]!.attrs.d!);
}

/** The y a value has on a panel's axis, from its gridlines (labels are plain numbers, "%" allowed). */
function yOnAxis(ticks: { label: string; y: number }[], v: number): number {
  const [a, b] = [ticks[0]!, ticks.at(-1)!];
  const [va, vb] = [parseFloat(a.label), parseFloat(b.label)];
  return a.y + ((b.y - a.y) * (v - va)) / (vb - va);
}

t.test('a short history: structure, subtitle facts, legend', async (t) => {
  // 101 samples a second apart: 100 periods, 25 of them above the 10% target
  const samples = Array.from({ length: 101 }, (_, i) =>
    sample(i, {
      stallUs: i >= 1 && i <= 25 ? 150_000 : 20_000,
      current: (400 + i) * MiB,
      given: i * MiB,
      action: i === 0 ? 'start' : i === 50 || i === 51 || i === 80 ? 'backoff' : 'probe',
      triggered: i === 50 || i === 80,
    }),
  );
  const svg = renderReport(header, samples);
  checkSvg(t, svg);
  t.equal(renderReport(header, samples), svg, 'deterministic');
  t.match(svg, /<svg [^>]*width="900" height="560" viewBox="0 0 900 560"[^>]*font-family="sans-serif"/, 'default size');
  t.match(svg, /<rect x="0" y="0" width="900" height="560" fill="#ffffff"\/>/, 'a white background');
  t.match(svg, /<text class="title"[^>]*>hyperbox-runc tune: web-1<\/text>/);

  const sub = /<text class="subtitle"[^>]*>([^<]*)<\/text>/.exec(svg)![1]!;
  t.equal(sub, 'from 2025-02-19 21:20:00 UTC · 1m 40s · peak 500 MiB · final 500 MiB · gave back 100 MiB · 25% of the time above target');

  const memLegend = panel(svg, 'memory');
  for (const label of ['memory (MiB)', 'current', 'limit', 'floor', 'ceiling 8.0 GiB (off scale)']) t.match(memLegend, `>${label}</text>`, `memory legend: ${label}`);
  const stallLegend = panel(svg, 'stall');
  for (const label of ['stall (% of time)', 'memory stall', 'io stall', 'target 10%', 'PSI trigger', 'backoff']) t.match(stallLegend, `>${label}</text>`, `stall legend: ${label}`);
  for (const cls of ['current', 'limit', 'floor', 'mem-stall', 'io-stall']) t.equal(withClass(svg, cls).length, 1, `a ${cls} path`);

  // time axis: 0..100 s
  const xticks = [...svg.matchAll(/<text class="xtick" x="([^"]+)"[^>]*>([^<]*)<\/text>/g)].map((m) => [Number(m[1]), m[2]]);
  t.same(xticks.map((x) => x[1]), ['0', '10', '20', '30', '40', '50', '60', '70', '80', '90', '100']);
  t.equal(xticks[0]![0], 62, 'the first sample at the left edge');
  t.equal(xticks.at(-1)![0], 880, 'the last at the right edge');
  t.match(svg, />time since the first sample \(s\)</);

  // the memory line follows current: 400 MiB at the left, 500 MiB at the right
  const memTicks = yTicks(svg, 'memory');
  const current = seriesPoints(svg, 'current');
  t.equal(current[0]![1], Math.round(yOnAxis(memTicks, 400) * 10) / 10, 'current starts at 400 MiB');
  t.equal(current.at(-1)![1], Math.round(yOnAxis(memTicks, 500) * 10) / 10, 'and ends at 500 MiB');
  t.ok(svg.match(/d="M[^"]*"/g)!.every((d) => !/\d\.\d\d/.test(d)), 'coordinates to one decimal');

  // two PSI triggers, as triangles on the stall panel's top edge, at their samples' x
  const stallTop = Number(/<rect x="62" y="([^"]+)"[^>]*fill="none"/.exec(panel(svg, 'stall'))![1]);
  const tri = pathPoints(withClass(svg, 'triggers')[0]!.attrs.d!);
  t.equal(tri.length, 6, 'two triangles');
  t.same([tri[0]![1], tri[3]![1]], [stallTop, stallTop]);
  t.same([tri[0]![0] + 3, tri[3]![0] + 3], [62 + 409, 62 + 654.4]);
  // backoff: 50-51 run together into one band up to sample 52, 80 alone up to 81; drawn in both panels
  const shading = /<g class="backoff"[^>]*>(.*?)<\/g>/.exec(panel(svg, 'stall'))![1]!;
  const bands = [...shading.matchAll(/<rect x="([^"]+)" y="[^"]+" width="([^"]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
  t.same(bands, [
    [471, 16.4],
    [716.4, 8.2],
  ]);
  t.equal((panel(svg, 'memory').match(/<g class="backoff"/g) ?? []).length, 1);
});

t.test('the target line sits at its percent on the stall axis', async (t) => {
  // data up to 5%, target 10%: the axis runs to twice the target
  const low = renderReport(header, [sample(0), sample(1, { memUs: 50_000 }), sample(2)]);
  const ticks = yTicks(low, 'stall');
  t.same(ticks.map((x) => x.label), ['0%', '5%', '10%', '15%', '20%']);
  const target = withClass(low, 'target')[0]!.attrs;
  t.equal(Number(target.y1), ticks[2]!.y, 'on the 10% gridline');
  t.equal(target.y1, target.y2, 'horizontal');
  t.equal(target.stroke, '#d62728', 'red');
  t.ok(target['stroke-dasharray'], 'dashed');
  t.match(low, /<text class="target-label"[^>]*>target 10%<\/text>/);

  // data up to 30%: the axis goes a tenth past it; a target of 7.5% falls between gridlines
  const high = renderReport({ ...header, targetUs: 75_000 }, [sample(0), sample(1, { memUs: 300_000 }), sample(2)]);
  const hticks = yTicks(high, 'stall');
  t.same(hticks.map((x) => x.label), ['0%', '5%', '10%', '15%', '20%', '25%', '30%', '35%']);
  t.ok(Math.abs(Number(withClass(high, 'target')[0]!.attrs.y1) - yOnAxis(hticks, 7.5)) <= 0.1, 'at 7.5% of the axis');
  t.match(high, />target 7.5%</);
  const peak = Math.min(...seriesPoints(high, 'mem-stall').map((p) => p[1]));
  t.ok(Math.abs(peak - yOnAxis(hticks, 30)) <= 0.1, 'the 30% sample at 30%');
});

t.test('a huge or distant ceiling leaves the memory axis alone', async (t) => {
  const history = (ceiling: number) => Array.from({ length: 20 }, (_, i) => sample(i, { current: (450 + 20 * i) * MiB, limit: 1000 * MiB, ceiling }));
  const axis = (svg: string) => yTicks(svg, 'memory').map((x) => `${x.label}@${x.y}`);

  const unlimited = renderReport(header, history(9.2e18));
  checkSvg(t, unlimited);
  t.same(yTicks(unlimited, 'memory').map((x) => x.label), ['0', '200', '400', '600', '800', '1000'], 'scaled to the limit');
  t.same(withClass(unlimited, 'ceiling'), [], 'no ceiling drawn');
  t.match(panel(unlimited, 'memory'), />no ceiling</);
  t.same(axis(renderReport(header, history(Infinity))), axis(unlimited), 'no different with an infinite ceiling');

  const far = renderReport(header, history(64 * GiB));
  t.same(axis(far), axis(unlimited), 'nor with one 64 times the limit');
  t.same(withClass(far, 'ceiling'), []);
  t.match(panel(far, 'memory'), />ceiling 64 GiB \(off scale\)</);

  // within 4x of the limit it is drawn, and the axis makes room for it
  const near = renderReport(header, history(2 * GiB));
  t.equal(withClass(near, 'ceiling').length, 1, 'a near ceiling is drawn');
  const nearTicks = yTicks(near, 'memory');
  t.equal(nearTicks.at(-1)!.label, '2500');
  t.ok(seriesPoints(near, 'ceiling').every((p) => Math.abs(p[1] - yOnAxis(nearTicks, 2048)) <= 0.1), 'at 2048 MiB');
  t.match(panel(near, 'memory'), />ceiling 2.0 GiB</);

  // past 4 GiB the axis is in GiB
  const big = renderReport(header, history(9.2e18).map((s) => ({ ...s, current: s.current * 10, limit: 10 * GiB })));
  t.match(big, />memory \(GiB\)</);
  t.same(yTicks(big, 'memory').map((x) => x.label), ['0', '2', '4', '6', '8', '10']);
});

t.test('100k samples: small output, spikes kept', async (t) => {
  const rnd = prng(42);
  const SPIKE = 61_234;
  const samples = Array.from({ length: 100_000 }, (_, i) => {
    const memUs = i === SPIKE ? 700_000 : 20_000 + 10_000 * rnd();
    return {
      t: T0 + i * 100,
      memUs,
      ioUs: 30_000 * rnd(),
      stallUs: memUs,
      current: (500 + 300 * rnd()) * MiB,
      limit: (850 + 50 * rnd()) * MiB,
      floor: (200 + 50 * rnd()) * MiB,
      ceiling: (1000 + 100 * rnd()) * MiB,
      given: i * 4096,
      action: rnd() < 0.05 ? 'backoff' : 'probe',
      triggered: rnd() < 0.05,
    } satisfies TuneSample;
  });
  const svg = renderReport({ ...header, targetUs: 50_000 }, samples);
  checkSvg(t, svg);
  t.ok(svg.length < 200_000, `under 200 KB (${svg.length} bytes)`);

  const ticks = yTicks(svg, 'stall');
  t.same(ticks.map((x) => x.label), ['0%', '20%', '40%', '60%', '80%'], 'the axis runs past the spike');
  const mem = seriesPoints(svg, 'mem-stall');
  t.ok(mem.length <= 2 * 818 + 1, `at most two points per pixel (${mem.length})`);
  const top = mem.reduce((a, p) => (p[1] < a[1] ? p : a));
  t.ok(Math.abs(top[1] - yOnAxis(ticks, 70)) <= 0.1, `the spike reaches 70% (y ${top[1]})`);
  t.ok(Math.abs(top[0] - (62 + (818 * SPIKE) / 99_999)) <= 0.1, 'at its time');
  const rest = mem.filter((p) => p !== top).map((p) => p[1]);
  t.ok(Math.min(...rest) > yOnAxis(ticks, 3.01), 'nothing else above 3%');
  t.ok(Math.abs(Math.max(...rest) - yOnAxis(ticks, 2)) <= 0.15, 'and the lows (2%) are kept too');
  for (const cls of ['current', 'limit', 'floor', 'ceiling', 'io-stall']) t.ok(seriesPoints(svg, cls).length <= 4 * 818, `${cls} decimated`);
});

t.test('text is escaped', async (t) => {
  const svg = renderReport({ ...header, containerId: `a&b<c>"d'e\u0001f` }, [sample(0), sample(1)]);
  checkSvg(t, svg);
  t.match(svg, /<text class="title"[^>]*>hyperbox-runc tune: a&amp;b&lt;c&gt;&quot;d&#39;ef<\/text>/);
  t.match(svg, /<title>hyperbox-runc tune: a&amp;b&lt;c&gt;&quot;d&#39;ef<\/title>/);
  const titled = renderReport(header, [sample(0), sample(1)], { title: '<script>&' });
  checkSvg(t, titled);
  t.match(titled, />&lt;script&gt;&amp;</);
  t.notMatch(titled, /<script/);
});

t.test('empty and single-sample histories', async (t) => {
  const empty = renderReport(header, []);
  checkSvg(t, empty);
  t.match(empty, /<text class="message"[^>]*>no samples yet<\/text>/);
  t.match(empty, />hyperbox-runc tune: web-1</);
  t.notMatch(empty, /<path/);

  const one = renderReport(header, [sample(0, { current: 300 * MiB, limit: 512 * MiB })]);
  checkSvg(t, one);
  t.match(one, /<text class="message"[^>]*>no samples yet beyond the first<\/text>/);
  t.match(one, /memory 300 MiB · limit 512 MiB · target 10% stall/);
  t.notMatch(one, /<path/);

  // samples with no usable time count as none
  checkSvg(t, renderReport(header, [sample(0, { t: NaN })]));
  t.match(renderReport(header, [sample(0, { t: NaN })]), />no samples yet</);
});

t.test('odd values never reach the drawing as NaN', async (t) => {
  const odd = [
    sample(3, { memUs: NaN, ceiling: undefined as unknown as number }),
    sample(1, { ioUs: Infinity, current: -5 }),
    sample(1, { limit: NaN, floor: 1e30 }),
    sample(2, { action: 'backoff', triggered: true }),
  ];
  const svg = renderReport({ containerId: 'x', targetUs: NaN, startedAt: NaN }, odd, { width: NaN, height: 10 });
  checkSvg(t, svg);
  t.match(svg, /width="900" height="260"/, 'sizes fall back or are clamped');
  t.match(svg, />target 0%</);

  // all samples at one instant: still a drawing, not a division by zero
  const same = renderReport(header, [sample(0), sample(0, { current: 600 * MiB })]);
  checkSvg(t, same);
  t.same(seriesPoints(same, 'current').map((p) => p[0]), [62, 62], 'both at the left edge');
});

t.test('a larger size and a custom title', async (t) => {
  const svg = renderReport(header, [sample(0), sample(1), sample(2)], { width: 1200, height: 700, title: 'db tuning' });
  checkSvg(t, svg);
  t.match(svg, /width="1200" height="700" viewBox="0 0 1200 700"/);
  t.match(svg, /<text class="title"[^>]*>db tuning<\/text>/);
  const xs = [...svg.matchAll(/<text class="xtick" x="([^"]+)"/g)].map((m) => Number(m[1]));
  t.equal(xs.at(-1), 1180, 'the time axis spans the new width');
});

t.test('durations', async (t) => {
  t.equal(formatDuration(0), '0.0s');
  t.equal(formatDuration(42.25), '42.3s');
  t.equal(formatDuration(100), '1m 40s');
  t.equal(formatDuration(7260), '2h 01m');
  t.equal(formatDuration(90_000), '1d 01h');
  t.equal(formatDuration(NaN), '0.0s');
});

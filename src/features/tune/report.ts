/**
 * `hyperbox-runc tune report`: a tuned container's history as one self-contained SVG, memory
 * above and stall below on a shared time axis, to be read at a glance.
 *
 * Pure and deterministic: the same history gives the same bytes (no clock, no random ids), and
 * nothing that is not a finite number reaches a coordinate, whatever the samples hold. However
 * long the history, the drawing stays small: each series keeps at most the lowest and the highest
 * of the samples under each horizontal pixel, so a one-sample spike is never averaged away.
 */
import { formatBytes } from '../../cli/output.js';
import type { HistoryHeader, TuneSample } from './history.js';

export interface ReportOptions {
  /** Pixels; 900 unless given. */
  width?: number;
  /** Pixels; 560 unless given. */
  height?: number;
  /** Replaces "hyperbox-runc tune: <container id>". */
  title?: string;
}

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;
/** A ceiling at or past this is no ceiling at all (cgroup "max" reads back near 2^63). */
const UNLIMITED = 2 ** 60;
/** A ceiling (or floor) further than this many times the largest current or limit is left off the plot: it would flatten it. */
const OFF_SCALE = 4;

const COLOR = {
  current: '#1f5fa8',
  limit: '#e07b00',
  floor: '#999999',
  ceiling: '#7b4fa0',
  memUs: '#1f5fa8',
  ioUs: '#93bde3',
  target: '#d62728',
  backoff: '#f5b942',
  grid: '#e8e8e8',
  frame: '#b0b0b0',
  text: '#222222',
  muted: '#666666',
};

/** The drawing's fixed geometry, pixels. */
const LEFT = 62;
const RIGHT = 20;
const TOP = 82;
const BOTTOM = 50;
/** Between the two panels: room for the stall panel's header. */
const GAP = 44;
/** Rough advance of one character of 11px sans-serif, to lay out the legend without measuring text. */
const CHAR_W = 6.1;

interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Text safe inside an element or a quoted attribute; characters XML 1.0 cannot hold at all are dropped. */
function esc(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** A coordinate: one decimal, and never NaN or Infinity (those become 0). */
function c(v: number): string {
  return Number.isFinite(v) ? String(Math.round(v * 10) / 10) : '0';
}

function finite(v: unknown, otherwise = 0): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : otherwise;
}

/** The step of 1, 2 or 5 times a power of ten nearest `raw` (on a log scale, as d3 picks them). */
function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < Math.SQRT2 ? 1 : norm < Math.sqrt(10) ? 2 : norm < Math.sqrt(50) ? 5 : 10) * mag;
}

/** Ticks from 0 up to the first one at or past `max`, about `count` of them. */
function niceTicks(max: number, count: number): { step: number; ticks: number[] } {
  const step = niceStep((max > 0 ? max : 1) / Math.max(1, count));
  const n = Math.max(1, Math.ceil((max > 0 ? max : 1) / step - 1e-9));
  return { step, ticks: Array.from({ length: n + 1 }, (_, i) => i * step) };
}

/** A tick value with as many decimals as its step needs (no 0.30000000000000004). */
function tickLabel(v: number, step: number): string {
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

/** A percentage to two decimals at most: "10", "2.5", "0.25". */
function pct(v: number): string {
  return String(Number(v.toFixed(2)));
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, finite(seconds));
  if (s < 60) return `${s.toFixed(1)}s`;
  const whole = Math.round(s);
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${String(whole % 60).padStart(2, '0')}s`;
  if (whole < 86400) return `${Math.floor(whole / 3600)}h ${String(Math.floor(whole / 60) % 60).padStart(2, '0')}m`;
  return `${Math.floor(whole / 86400)}d ${String(Math.floor(whole / 3600) % 24).padStart(2, '0')}h`;
}

/** "2025-03-01 10:00:00 UTC", or nothing for a time no Date can hold. */
function utc(ms: number): string | undefined {
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) return undefined;
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

/** The samples as columns of plain numbers, in time order, without any that have no time. */
interface Columns {
  n: number;
  t: Float64Array;
  memUs: Float64Array;
  ioUs: Float64Array;
  stallUs: Float64Array;
  current: Float64Array;
  limit: Float64Array;
  floor: Float64Array;
  ceiling: Float64Array;
  given: Float64Array;
  action: TuneSample['action'][];
  triggered: boolean[];
}

function columns(samples: TuneSample[]): Columns {
  let rows = samples.filter((s) => s && Number.isFinite(s.t));
  if (rows.some((s, i) => i > 0 && s.t < rows[i - 1]!.t)) rows = [...rows].sort((a, b) => a.t - b.t);
  const n = rows.length;
  const col = (f: (s: TuneSample) => number) => Float64Array.from(rows, f);
  return {
    n,
    t: col((s) => s.t),
    memUs: col((s) => Math.max(0, finite(s.memUs))),
    ioUs: col((s) => Math.max(0, finite(s.ioUs))),
    stallUs: col((s) => Math.max(0, finite(s.stallUs))),
    current: col((s) => Math.max(0, finite(s.current))),
    limit: col((s) => Math.max(0, finite(s.limit))),
    floor: col((s) => Math.max(0, finite(s.floor))),
    // a missing or infinite ceiling is no ceiling, like cgroup "max"
    ceiling: col((s) => (typeof s.ceiling === 'number' && s.ceiling > 0 && s.ceiling < UNLIMITED ? s.ceiling : Infinity)),
    given: col((s) => Math.max(0, finite(s.given))),
    action: rows.map((s) => s.action),
    triggered: rows.map((s) => s.triggered === true),
  };
}

function maxOf(a: Float64Array, keep: (v: number) => boolean = Number.isFinite): number {
  let m = 0;
  for (const v of a) if (keep(v) && v > m) m = v;
  return m;
}

/**
 * The samples worth drawing for one series: per pixel column (`col[i]`, non-decreasing), the
 * lowest and the highest, in time order; one when they are the same sample or value.
 */
function decimate(col: Int32Array, v: Float64Array): number[] {
  const out: number[] = [];
  let i = 0;
  while (i < col.length) {
    let lo = i;
    let hi = i;
    let j = i + 1;
    for (; j < col.length && col[j] === col[i]; j++) {
      if (v[j]! < v[lo]!) lo = j;
      if (v[j]! > v[hi]!) hi = j;
    }
    if (lo === hi || v[lo] === v[hi]) out.push(lo);
    else out.push(Math.min(lo, hi), Math.max(lo, hi));
    i = j;
  }
  return out;
}

/** A polyline through the points, repeated points dropped; a lone point gets a stub so it shows. */
function linePath(pts: [number, number][]): string {
  let d = '';
  let last = '';
  let count = 0;
  for (const [x, y] of pts) {
    const p = `${c(x)} ${c(y)}`;
    if (p === last) continue;
    d += (count === 0 ? 'M' : 'L') + p;
    last = p;
    count++;
  }
  return count === 1 ? d + 'h1' : d;
}

/** A step line: each value holds until the next sample's; a lone point gets a stub so it shows. */
function stepPath(pts: [number, number][]): string {
  if (pts.length === 0) return '';
  let [px, py] = [c(pts[0]![0]), c(pts[0]![1])];
  let d = `M${px} ${py}`;
  const start = d.length;
  for (const [x, y] of pts.slice(1)) {
    const [sx, sy] = [c(x), c(y)];
    if (sx !== px) d += `H${sx}`;
    if (sy !== py) d += `V${sy}`;
    [px, py] = [sx, sy];
  }
  return d.length === start ? d + 'h1' : d;
}

interface LegendItem {
  label: string;
  /** The swatch's own markup, drawn in a 18x10 box whose left middle is (0, 0); none for plain text. */
  swatch?: string;
}

function lineSwatch(color: string, width: number, dash?: string): string {
  return `<line x1="0" y1="0" x2="18" y2="0" stroke="${color}" stroke-width="${width}"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`;
}

/** A panel's name in bold, then its legend, on one row whose text baseline is `y`. */
function panelHeader(name: string, items: LegendItem[], x: number, y: number): string {
  let out = `<text class="panel-title" x="${c(x)}" y="${c(y)}" font-weight="bold" fill="${COLOR.text}">${esc(name)}</text>`;
  let at = x + name.length * CHAR_W * 1.1 + 18;
  out += '<g class="legend">';
  for (const it of items) {
    if (it.swatch) {
      out += `<g transform="translate(${c(at)} ${c(y - 4)})">${it.swatch}</g>`;
      at += 22;
    }
    out += `<text x="${c(at)}" y="${c(y)}" fill="${COLOR.text}">${esc(it.label)}</text>`;
    at += it.label.length * CHAR_W + 16;
  }
  return out + '</g>';
}

/** Horizontal gridlines with their labels on the left, one group per tick. */
function yGrid(box: Box, ticks: number[], step: number, top: number, unit: string): string {
  let out = '';
  for (const v of ticks) {
    const y = box.top + box.height * (1 - v / top);
    out +=
      `<g class="ytick"><line x1="${c(box.left)}" y1="${c(y)}" x2="${c(box.left + box.width)}" y2="${c(y)}" stroke="${COLOR.grid}"/>` +
      `<text x="${c(box.left - 6)}" y="${c(y + 4)}" text-anchor="end" fill="${COLOR.muted}">${esc(tickLabel(v, step) + unit)}</text></g>`;
  }
  return out;
}

function xGrid(box: Box, xs: number[]): string {
  return xs.map((x) => `<line x1="${c(x)}" y1="${c(box.top)}" x2="${c(x)}" y2="${c(box.top + box.height)}" stroke="${COLOR.grid}"/>`).join('');
}

function frame(box: Box): string {
  return `<rect x="${c(box.left)}" y="${c(box.top)}" width="${c(box.width)}" height="${c(box.height)}" fill="none" stroke="${COLOR.frame}"/>`;
}

function series(cls: string, d: string, color: string, width: number, dash?: string): string {
  if (!d) return '';
  return `<path class="series ${cls}" d="${d}" fill="none" stroke="${color}" stroke-width="${width}" stroke-linejoin="round"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`;
}

/** The whole picture around a message, for histories too short to plot. */
function placeholder(width: number, height: number, title: string, subtitle: string, message: string): string {
  return [
    svgOpen(width, height, title),
    `<text class="title" x="${LEFT}" y="28" font-size="16" font-weight="bold" fill="${COLOR.text}">${esc(title)}</text>`,
    subtitle ? `<text class="subtitle" x="${LEFT}" y="48" font-size="12" fill="${COLOR.muted}">${esc(subtitle)}</text>` : '',
    `<text class="message" x="${c(width / 2)}" y="${c(height / 2)}" font-size="14" text-anchor="middle" fill="${COLOR.muted}">${esc(message)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

function svgOpen(width: number, height: number, title: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">\n` +
    `<title>${esc(title)}</title>\n<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`
  );
}

/** The history as an SVG document (a string ending in a newline). */
export function renderReport(header: HistoryHeader, samples: TuneSample[], opts: ReportOptions = {}): string {
  const width = Math.round(Math.max(320, finite(opts.width, 900)));
  const height = Math.round(Math.max(260, finite(opts.height, 560)));
  const title = opts.title ?? `hyperbox-runc tune: ${header.containerId}`;
  const targetUs = Math.max(0, finite(header.targetUs));
  const s = columns(samples);
  const n = s.n;

  if (n === 0) return placeholder(width, height, title, `target ${pct(targetUs / 1e4)}% stall`, 'no samples yet');
  if (n === 1) {
    const sub = `${utc(s.t[0]!) ?? ''}${utc(s.t[0]!) ? ' · ' : ''}memory ${formatBytes(s.current[0]!)} · limit ${formatBytes(s.limit[0]!)} · target ${pct(targetUs / 1e4)}% stall`;
    return placeholder(width, height, title, sub, 'no samples yet beyond the first');
  }

  // Geometry: two panels of equal height sharing the plot's width and time axis.
  const plotW = width - LEFT - RIGHT;
  const panelH = (height - TOP - BOTTOM - GAP) / 2;
  const mem: Box = { left: LEFT, top: TOP, width: plotW, height: panelH };
  const stall: Box = { left: LEFT, top: TOP + panelH + GAP, width: plotW, height: panelH };

  // Time: seconds since the first sample, spread over the whole width.
  const t0 = s.t[0]!;
  const spanS = Math.max((s.t[n - 1]! - t0) / 1000, 0.001);
  const xOf = (t: number) => LEFT + (plotW * (t - t0)) / 1000 / spanS;
  const px = Float64Array.from(s.t, xOf);
  const col = Int32Array.from(px, (x) => Math.min(Math.floor(plotW) - 1, Math.max(0, Math.floor(x - LEFT))));
  const xt = niceTicks(spanS, plotW / 90);
  const xTicks = xt.ticks.filter((v) => v <= spanS * (1 + 1e-9));
  const xTickPx = xTicks.map((v) => LEFT + (plotW * v) / spanS);

  // Memory: scaled to current and limit; floor and ceiling join only when they would not flatten them.
  const base = Math.max(maxOf(s.current), maxOf(s.limit));
  const floorMax = maxOf(s.floor);
  const ceilMax = maxOf(s.ceiling);
  const hasCeiling = ceilMax > 0;
  const showCeiling = hasCeiling && ceilMax <= OFF_SCALE * base;
  const memMax = Math.max(base, floorMax <= OFF_SCALE * base ? floorMax : 0, showCeiling ? ceilMax : 0);
  const unit = memMax > 4 * GIB ? GIB : MIB;
  const unitName = unit === GIB ? 'GiB' : 'MiB';
  const my = niceTicks(memMax / unit, panelH / 40);
  const memTop = my.ticks.at(-1)!;
  const memY = (bytes: number) => mem.top + mem.height * (1 - Math.min(Math.max(bytes / unit / memTop, 0), 1));

  // Stall: percent of time, 0 to twice the target or a tenth past the highest value.
  const stallPeak = Math.max(maxOf(s.memUs), maxOf(s.ioUs)) / 1e4;
  const targetPct = targetUs / 1e4;
  const sy = niceTicks(Math.max(targetPct * 2, stallPeak * 1.1), panelH / 40);
  const stallTop = sy.ticks.at(-1)!;
  const stallY = (us: number) => stall.top + stall.height * (1 - Math.min(Math.max(us / 1e4 / stallTop, 0), 1));

  const path = (v: Float64Array, y: (v: number) => number, step = false) => {
    const pts = decimate(col, v).map((i): [number, number] => [px[i]!, y(v[i]!)]);
    return step ? stepPath(pts) : linePath(pts);
  };

  // Backoff steps: the stretch from each one to the next sample, merged when they touch.
  const bands: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    if (s.action[i] !== 'backoff') continue;
    const a = px[i]!;
    const b = Math.max(i + 1 < n ? px[i + 1]! : a, a + 1);
    const last = bands.at(-1);
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else bands.push([a, b]);
  }
  const shade = (box: Box) =>
    bands.length === 0
      ? ''
      : `<g class="backoff" fill="${COLOR.backoff}" fill-opacity="0.18">` +
        bands.map(([a, b]) => `<rect x="${c(a)}" y="${c(box.top)}" width="${c(Math.min(b, box.left + box.width) - a)}" height="${c(box.height)}"/>`).join('') +
        '</g>';

  // PSI triggers: a small red triangle on the stall panel's top edge, one per pixel at most.
  let triggers = '';
  let lastTrigger = -1;
  for (let i = 0; i < n; i++) {
    if (!s.triggered[i] || col[i] === lastTrigger) continue;
    lastTrigger = col[i]!;
    triggers += `M${c(px[i]! - 3)} ${c(stall.top)}h6l-3 6z`;
  }

  // Summary facts.
  let peak = 0;
  for (const v of s.current) peak = Math.max(peak, v);
  let above = 0;
  let total = 0;
  for (let i = 1; i < n; i++) {
    // a sample's stall is over the period that ends at it
    const dt = s.t[i]! - s.t[i - 1]!;
    total += dt;
    if (s.stallUs[i]! > targetUs) above += dt;
  }
  const from = utc(t0);
  const subtitle = [
    ...(from ? [`from ${from}`] : []),
    formatDuration(spanS),
    `peak ${formatBytes(peak)}`,
    `final ${formatBytes(s.current[n - 1]!)}`,
    `gave back ${formatBytes(s.given[n - 1]!)}`,
    `${pct(total > 0 ? (100 * above) / total : 0)}% of the time above target`,
  ].join(' · ');

  const ceilingLabel = !hasCeiling ? 'no ceiling' : `ceiling ${formatBytes(ceilMax)}${showCeiling ? '' : ' (off scale)'}`;
  const memLegend: LegendItem[] = [
    { label: 'current', swatch: lineSwatch(COLOR.current, 2) },
    { label: 'limit', swatch: lineSwatch(COLOR.limit, 1.5) },
    { label: 'floor', swatch: lineSwatch(COLOR.floor, 1, '2 3') },
    showCeiling ? { label: ceilingLabel, swatch: lineSwatch(COLOR.ceiling, 1.2, '6 4') } : { label: ceilingLabel },
  ];
  const stallLegend: LegendItem[] = [
    { label: 'memory stall', swatch: lineSwatch(COLOR.memUs, 1.5) },
    { label: 'io stall', swatch: lineSwatch(COLOR.ioUs, 1.2) },
    { label: `target ${pct(targetPct)}%`, swatch: lineSwatch(COLOR.target, 1.2, '6 4') },
    { label: 'PSI trigger', swatch: `<path d="M6 -4h6l-3 6z" fill="${COLOR.target}"/>` },
    ...(bands.length ? [{ label: 'backoff', swatch: `<rect x="0" y="-5" width="18" height="10" fill="${COLOR.backoff}" fill-opacity="0.35"/>` }] : []),
  ];

  const targetY = stallY(targetUs);
  const out = [
    svgOpen(width, height, title),
    `<text class="title" x="${LEFT}" y="28" font-size="16" font-weight="bold" fill="${COLOR.text}">${esc(title)}</text>`,
    `<text class="subtitle" x="${LEFT}" y="48" font-size="12" fill="${COLOR.muted}">${esc(subtitle)}</text>`,

    '<g class="panel memory">',
    panelHeader(`memory (${unitName})`, memLegend, LEFT, mem.top - 10),
    shade(mem),
    xGrid(mem, xTickPx),
    yGrid(mem, my.ticks, my.step, memTop, ''),
    frame(mem),
    series('floor', path(s.floor, memY, true), COLOR.floor, 1, '2 3'),
    showCeiling ? series('ceiling', path(s.ceiling, memY, true), COLOR.ceiling, 1.2, '6 4') : '',
    series('limit', path(s.limit, memY, true), COLOR.limit, 1.5),
    series('current', path(s.current, memY), COLOR.current, 2),
    '</g>',

    '<g class="panel stall">',
    panelHeader('stall (% of time)', stallLegend, LEFT, stall.top - 10),
    shade(stall),
    xGrid(stall, xTickPx),
    yGrid(stall, sy.ticks, sy.step, stallTop, '%'),
    frame(stall),
    series('io-stall', path(s.ioUs, stallY), COLOR.ioUs, 1.2),
    series('mem-stall', path(s.memUs, stallY), COLOR.memUs, 1.5),
    `<line class="target" x1="${c(stall.left)}" y1="${c(targetY)}" x2="${c(stall.left + stall.width)}" y2="${c(targetY)}" stroke="${COLOR.target}" stroke-width="1.2" stroke-dasharray="6 4"/>`,
    `<text class="target-label" x="${c(stall.left + stall.width - 4)}" y="${c(targetY - 4)}" text-anchor="end" fill="${COLOR.target}" stroke="#ffffff" stroke-width="3" stroke-opacity="0.85" paint-order="stroke">${esc(`target ${pct(targetPct)}%`)}</text>`,
    triggers ? `<path class="triggers" d="${triggers}" fill="${COLOR.target}"/>` : '',
    '</g>',

    '<g class="xaxis">',
    ...xTicks.map((v, i) => `<text class="xtick" x="${c(xTickPx[i]!)}" y="${c(stall.top + stall.height + 16)}" text-anchor="middle" fill="${COLOR.muted}">${esc(tickLabel(v, xt.step))}</text>`),
    `<text x="${c(LEFT + plotW / 2)}" y="${c(stall.top + stall.height + 36)}" text-anchor="middle" fill="${COLOR.text}">time since the first sample (s)</text>`,
    '</g>',
    '</svg>',
    '',
  ];
  return out.filter((l) => l !== '').join('\n') + '\n';
}

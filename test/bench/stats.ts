/** Medians and ratios for side-by-side benchmarks (never absolute times across runs). */

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Formats milliseconds with two decimals. */
export const ms = (x: number): string => `${x.toFixed(2)} ms`;

/** Replaces the README block between <!-- bench:NAME --> and <!-- /bench:NAME --> with text. */
export function replaceReadmeBlock(readme: string, name: string, text: string): string {
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const a = readme.indexOf(start);
  const b = readme.indexOf(end);
  if (a < 0 || b < a) throw new Error(`README has no ${start} ... ${end} block`);
  return readme.slice(0, a + start.length) + '\n' + text.trimEnd() + '\n' + readme.slice(b);
}

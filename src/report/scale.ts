/**
 * The report's axis for context lengths: logarithmic where the values span a wide range (a shelf
 * holds 4k models beside 1M ones, and a search's first loads sit at 2k while its limit sits at
 * 100k), linear where they do not. Ticks sit at powers of two, the sizes models declare.
 *
 * @module
 */

/** An axis from context lengths to pixels. */
export interface Scale {
  /** The pixel of `tokens`, clamped to the axis. */
  x(tokens: number): number;
  /** Whether the axis is logarithmic. */
  log: boolean;
  /** Tick values, each with its label ("4k", "1M"). */
  ticks: { value: number; label: string }[];
}

/** Above this ratio of the largest value to the smallest, the axis is logarithmic. */
const LOG_RATIO = 16;

/**
 * An axis covering `values` (context lengths; zero and negatives are ignored) on pixels
 * `[left, right]`, its ends at powers of two around them, at least `floor` wide at the bottom.
 */
export function contextScale(
  values: readonly number[],
  left: number,
  right: number,
  floor = 2048,
): Scale {
  const positive = values.filter((v) => v > 0 && Number.isFinite(v));
  const smallest = Math.min(floor, ...positive);
  const largest = Math.max(floor * 2, ...positive);
  const lo = 2 ** Math.floor(Math.log2(smallest));
  const hi = 2 ** Math.ceil(Math.log2(largest));
  const log = hi / lo > LOG_RATIO;
  const span = right - left;
  const x = log
    ? (t: number) => left + span * (Math.log2(clamp(t, lo, hi) / lo) / Math.log2(hi / lo))
    : (t: number) => left + span * ((clamp(t, 0, hi) - 0) / hi);
  const ticks: { value: number; label: string }[] = [];
  if (log) {
    const octaves = Math.log2(hi / lo);
    const step = octaves > 10 ? 2 : 1; // no more than about ten labels
    for (let p = 0; p <= octaves; p += step) ticks.push(tick(lo * 2 ** p));
  } else {
    for (let i = 0; i <= 4; i++) ticks.push(tick((hi / 4) * i));
  }
  return { x: (t) => round1(x(t)), log, ticks };
}

/** A short label of a context length: 4k, 128k, 1M; exact digits where it is not round. */
export function shortTokens(value: number): string {
  if (value >= 1_048_576 && value % 1_048_576 === 0) return `${value / 1_048_576}M`;
  if (value >= 1024 && value % 1024 === 0) return `${value / 1024}k`;
  return value.toLocaleString("en-US");
}

function tick(value: number): { value: number; label: string } {
  return { value, label: shortTokens(value) };
}

function clamp(value: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, value));
}

/** One decimal: enough for a pixel, and the file stays small. */
export function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

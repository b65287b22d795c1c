/**
 * The model's prefill curve, learned from the run's own timings: LM Studio reports each
 * prediction's time to first token, and the search knows which positions of the prompt the
 * server had to process (all of them cold, only those past the cached prefix when the prompt
 * cache works). The cost of a token at depth p is taken as `s * (1 + p / d)`: s the seconds per
 * token at the start of the context, d the depth at which attention has doubled it (a few
 * thousand tokens on a CPU, tens of thousands on a GPU), plus a fixed overhead per prediction.
 * So a prediction that processed positions [m, n) takes `o + s*(n - m) + (s/d)*(n² - m²)/2`,
 * which is linear in (o, s, s/d): a least-squares fit over the timed predictions gives the curve.
 * Until three timings, at depths apart, exist, d is the default {@link DEFAULT_DOUBLING_TOKENS}.
 * Pure.
 *
 * @module
 */

/** A fitted prefill curve (see the module doc), as the record's costs keep it. */
export interface PrefillCurve {
  /** Seconds per prompt token at the start of the context. */
  secondsPerToken: number;
  /** Depth at which attention has doubled a token's prefill cost, tokens. */
  doublingTokens: number;
  /** Whether `doublingTokens` was fitted (else the default: too few timings at depths apart). */
  doublingMeasured: boolean;
  /** Fixed seconds of a prediction before its first token, beyond the prefill. */
  overheadSeconds: number;
  /** Timed predictions the fit rests on. */
  samples: number;
}

/** One timed prediction: positions [from, to) were prefilled in `seconds`. */
export type PrefillSample = [from: number, to: number, seconds: number];

/**
 * Depth at which attention doubles a token's prefill cost before the run has measured it: a
 * consumer GPU or Apple silicon with a 7B model (llama.cpp measured on a CPU here doubles it
 * nearer 8k, the emulator's default machine at 24k). A default only: the fit replaces it as soon
 * as three predictions at depths apart were timed.
 */
export const DEFAULT_DOUBLING_TOKENS = 32_768;

/** Timed predictions kept for the fit (the latest ones): a search sends a few dozen at most. */
export const MAX_PREFILL_SAMPLES = 32;

/** Doubling depths the fit may give: beyond the upper one the curve is linear for any prompt. */
const DOUBLING_RANGE = [256, 100_000_000] as const;

/** Smallest spread of depths (ratio of the deepest sample's mean depth to the shallowest's). */
const MIN_DEPTH_SPREAD = 1.5;

/** Seconds the curve gives for prefilling positions [from, to), overhead not included. */
export function prefillSeconds(curve: PrefillCurve, from: number, to: number): number {
  if (to <= from) return 0;
  const slope = curve.secondsPerToken / curve.doublingTokens;
  return curve.secondsPerToken * (to - from) + slope * (to * to - from * from) / 2;
}

/** Keeps `sample` among the latest {@link MAX_PREFILL_SAMPLES}. */
export function addPrefillSample(samples: PrefillSample[], sample: PrefillSample): void {
  samples.push(sample);
  if (samples.length > MAX_PREFILL_SAMPLES) samples.splice(0, samples.length - MAX_PREFILL_SAMPLES);
}

/**
 * The curve that fits `samples` best in least squares (seconds), or null without a sample: the
 * overhead, the speed and the doubling depth where the samples span depths enough to tell
 * (else the default depth); the overhead only where it comes out positive.
 */
export function fitPrefillCurve(samples: readonly PrefillSample[]): PrefillCurve | null {
  const usable = samples.filter(([from, to, seconds]) => to > from && seconds > 0);
  if (usable.length === 0) return null;
  // Features in kilotokens, so that the normal equations stay well conditioned.
  const rows = usable.map(([from, to, seconds]) => {
    const a = (to - from) / 1000;
    const b = (to * to - from * from) / 2e6;
    return [1, a, b, seconds] as const;
  });
  const depths = usable.map(([from, to]) => (from + to) / 2);
  const spread = Math.max(...depths) / Math.max(1, Math.min(...depths));
  const curve = (speed: number, slope: number, overhead: number, measured: boolean) => {
    const perToken = speed / 1000;
    const doubling = slope > 0 ? (speed / slope) * 1000 : DOUBLING_RANGE[1];
    return {
      secondsPerToken: perToken,
      doublingTokens: Math.round(
        Math.min(DOUBLING_RANGE[1], Math.max(DOUBLING_RANGE[0], doubling)),
      ),
      doublingMeasured: measured,
      overheadSeconds: overhead,
      samples: usable.length,
    };
  };
  // Three timings at least: with two, a prediction's fixed overhead passes for a flatter curve
  // (it weighs most on the short prompts a scan starts with).
  if (usable.length >= 3 && spread >= MIN_DEPTH_SPREAD) {
    const [o, s, t] = leastSquares(rows, [0, 1, 2]);
    if (o !== undefined && s !== undefined && t !== undefined && o >= 0 && s > 0 && t >= 0) {
      return curve(s, t, o, true);
    }
    const [s2, t2] = leastSquares(rows, [1, 2]);
    if (s2 !== undefined && t2 !== undefined && s2 > 0 && t2 >= 0) return curve(s2, t2, 0, true);
  }
  // One depth only: the speed under the default doubling depth.
  const k = 1000 / DEFAULT_DOUBLING_TOKENS;
  const fixed = rows.map(([one, a, b, seconds]) => [one, a + k * b, 0, seconds] as const);
  const [s] = leastSquares(fixed, [1]);
  return s !== undefined && s > 0 ? curve(s, s * k, 0, false) : null;
}

/**
 * Least squares of the last column of `rows` on the columns `use`: the coefficients, in that
 * order, or an empty array where the normal equations are singular. Gaussian elimination with
 * partial pivoting on at most three unknowns.
 */
function leastSquares(rows: readonly (readonly number[])[], use: readonly number[]): number[] {
  const n = use.length;
  const m: number[][] = Array.from({ length: n }, () => new Array<number>(n + 1).fill(0));
  for (const row of rows) {
    const y = row[row.length - 1]!;
    for (let i = 0; i < n; i++) {
      const xi = row[use[i]!]!;
      for (let j = 0; j < n; j++) m[i]![j]! += xi * row[use[j]!]!;
      m[i]![n]! += xi * y;
    }
  }
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) {
      if (Math.abs(m[r]![col]!) > Math.abs(m[pivot]![col]!)) pivot = r;
    }
    if (Math.abs(m[pivot]![col]!) < 1e-12) return [];
    [m[col], m[pivot]] = [m[pivot]!, m[col]!];
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const factor = m[r]![col]! / m[col]![col]!;
      for (let c = col; c <= n; c++) m[r]![c]! -= factor * m[col]![c]!;
    }
  }
  return m.map((row, i) => row[n]! / row[i]!);
}

/**
 * The curve in a few words, for the log and `show`: `0.22 ms/token, doubling at 8,192 tokens`
 * (the speed at the start of the context, and the depth at which a token costs twice that).
 */
export function describeCurve(curve: PrefillCurve): string {
  const ms = curve.secondsPerToken * 1000;
  const doubling = curve.doublingTokens >= DOUBLING_RANGE[1]
    ? "no slowdown with depth"
    : `doubling at ${curve.doublingTokens.toLocaleString("en-US")} tokens` +
      (curve.doublingMeasured ? "" : " (assumed)");
  return `${ms < 0.1 ? ms.toFixed(3) : ms.toFixed(2)} ms/token, ${doubling}`;
}

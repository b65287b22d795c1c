/**
 * The working scan without a prompt cache, planned as the least expected cost: every needle pays
 * for its whole prompt (the fitted prefill curve prices it), a test may be made as a confirming
 * load instead (a load at that size and a fresh full-length needle: a pass there needs no reload
 * later), and the working size is taken to lie anywhere between the largest pass and the smallest
 * failure (uniformly on the precision grid below the instance, with a share of its own for the
 * instance's full length, see {@link planWorking}). The same dynamic programme as the bench's
 * best average (`scripts/bench/best_average.ts`, its needle game without a cache), so that the
 * search makes the decisions the bench scores it against, with the costs measured so far. Pure.
 *
 * @module
 */

import { FULL_WORKS_AT_DECLARED, promptPrices } from "./plan.ts";
import { DEFAULT_WORKS_AT_LIMIT } from "./shelf_share.ts";
import type { MeasuredCosts, SearchConfig } from "./types.ts";

/**
 * The plan's chance that the model works at the full length of an instance as large as memory
 * or health allow, where the run has not learned its shelf's own ({@link SearchConfig}'s
 * `worksAtLimit`, `shelf_share.ts`). Lower than the single full-length probe's
 * {@link FULL_WORKS_AT_DECLARED}-or-half guess, because the plan weighs every size below as well:
 * measured over the bench's two priors (a shelf where half the models work at their loadable
 * size, and a uniform spread where hardly any do), one in four keeps it nearest the best on both
 * (`docs/bench.md`).
 */
export const WORKS_AT_LIMIT = DEFAULT_WORKS_AT_LIMIT;

/** Largest grid the plan solves (cells of the precision); a larger one keeps the heuristic. */
const MAX_CELLS = 160;

/**
 * Solved plans kept, by their grid and prices (rounded, so that a search, and the next model of
 * the same kind, asks the same one at every step).
 */
const MAX_PLANS = 512;

/** Prices of one plan, in seconds: a needle filling each grid size, and a load. */
export interface WorkingPrices {
  /** Sizes of the grid, ascending; the last is the instance's full length. */
  sizes: readonly number[];
  /** A cold needle filling each size. */
  needle: readonly number[];
  /** A successful load and its unload. */
  load: number;
  /** Weight of "works at the full length" against one grid cell below it. */
  topWeight: number;
}

/** The next test: grid index, and whether to make it as a confirming load. */
export interface WorkingStep {
  index: number;
  load: boolean;
}

interface Solved {
  /** Move per state, 2t for a needle at t, 2t + 1 for a load there; -1: done. */
  failed: Int32Array[];
  open: Int32Array[];
}

const plans = new Map<string, Solved>();

/**
 * The next test of the plan for `prices`, from the state: `lo` the grid index of the largest pass
 * (-1: none yet), `hi` of the smallest failure (null: none below the instance), `confirmed`
 * whether that pass was made at a load of its size. Null when the interval is down to one cell
 * (the caller confirms or ends) or the grid is too large to solve.
 */
export function planWorking(
  prices: WorkingPrices,
  lo: number,
  hi: number | null,
  confirmed: boolean,
): WorkingStep | null {
  const n = prices.sizes.length - 1;
  if (n < 1 || n > MAX_CELLS) return null;
  const key = [prices.sizes[0], n, prices.sizes[n], prices.load, prices.topWeight, ...prices.needle]
    .join(",");
  let solved = plans.get(key);
  if (solved === undefined) {
    solved = solve(prices);
    if (plans.size >= MAX_PLANS) plans.delete(plans.keys().next().value!);
    plans.set(key, solved);
  }
  const w = n + 2;
  const conf = confirmed && lo >= 0 ? 1 : 0;
  const move = hi === null ? solved.open[conf]![lo + 1]! : solved.failed[conf]![(lo + 1) * w + hi]!;
  return move < 0 ? null : { index: move >> 1, load: (move & 1) === 1 };
}

/**
 * Solves every state of the plan (see the module doc; the bench's needle game with no cache):
 * after a failure at hi, W uniform on [max(lo, 0), hi - 1]; before one, on [max(lo, 0), n] with
 * the full length weighing `topWeight` cells. A test at t costs its needle (and a load, made as
 * a confirming load, whatever it shows); the end costs a confirmation (a load and a needle)
 * unless the pass was one. (The bench's game charges a failing confirming load to its load game.)
 */
function solve(prices: WorkingPrices): Solved {
  const n = prices.sizes.length - 1;
  const { needle, load } = prices;
  const at = (t: number) => needle[t] ?? 0;
  const confirm = (k: number) => load + at(k);
  const w = n + 2;
  const failed = [new Float64Array(w * w), new Float64Array(w * w)];
  const failedMoves = [new Int32Array(w * w).fill(-1), new Int32Array(w * w).fill(-1)];
  const get = (lo: number, hi: number, conf: number) => failed[conf]![(lo + 1) * w + hi]!;
  for (let hi = 1; hi <= n; hi++) {
    for (let lo = hi - 1; lo >= -1; lo--) {
      const a = Math.max(lo, 0);
      for (const conf of lo >= 0 ? [0, 1] : [0]) {
        let best = a === hi - 1 ? (conf === 1 ? 0 : confirm(a)) : Infinity;
        let move = -1;
        const m = hi - a;
        for (let t = lo + 1; t < hi && a < hi - 1; t++) {
          const up = (hi - t) / m;
          const stay = t > a ? get(lo, t, conf) * ((t - a) / m) : 0;
          const needleCost = at(t) + up * get(t, hi, 0) + stay;
          const loadCost = at(t) + load + up * get(t, hi, 1) + stay;
          if (needleCost < best) [best, move] = [needleCost, 2 * t];
          if (loadCost < best) [best, move] = [loadCost, 2 * t + 1];
        }
        failed[conf]![(lo + 1) * w + hi] = best;
        failedMoves[conf]![(lo + 1) * w + hi] = move;
      }
    }
  }
  // Before any failure: W in [max(lo, 0), n], the full length weighing r cells.
  const r = Math.max(1e-9, prices.topWeight);
  const open = [new Float64Array(n + 2), new Float64Array(n + 2)];
  const openMoves = [new Int32Array(n + 2).fill(-1), new Int32Array(n + 2).fill(-1)];
  for (let lo = n - 1; lo >= -1; lo--) {
    const a = Math.max(lo, 0);
    const m = n - a + r;
    for (const conf of lo >= 0 ? [0, 1] : [0]) {
      let best = Infinity;
      let move = -1;
      for (let t = lo + 1; t <= n; t++) {
        const up = (n - t + r) / m;
        const stay = t > a ? get(lo, t, conf) * ((t - a) / m) : 0;
        // A pass at the full length is a load-level pass: nothing is left to confirm.
        const next = t === n ? 0 : open[0]![t + 1]!;
        const needleCost = at(t) + up * next + stay;
        const loadCost = t === n ? Infinity : at(t) + load + up * open[1]![t + 1]! + stay;
        if (needleCost < best) [best, move] = [needleCost, 2 * t];
        if (loadCost < best) [best, move] = [loadCost, 2 * t + 1];
      }
      open[conf]![lo + 1] = best;
      openMoves[conf]![lo + 1] = move;
    }
  }
  return { failed: failedMoves, open: openMoves };
}

/**
 * The prices of the plan on the instance `top`, from what was measured (null until a needle and
 * a load were timed): the grid of the precision below `top` down to `minContext`, each needle
 * priced in prompt tokens at the start of the context (the probe's measured fixed cost and the
 * fitted curve's prefill, rounded: {@link promptPrices}) and a load in the same tokens. The full
 * length weighs as the search's prior says (the shelf's `worksAtLimit`, else
 * {@link WORKS_AT_LIMIT}, where loads or health stop just above it; else
 * {@link FULL_WORKS_AT_DECLARED}).
 */
export function workingPrices(
  costs: MeasuredCosts,
  grid: Pick<SearchConfig, "minContext" | "precision" | "reserve" | "worksAtLimit"> & {
    top: number;
  },
  atLimit: boolean,
): WorkingPrices | null {
  const curve = costs.prefillCurve ?? null;
  if (curve === null || costs.loads === 0 || curve.secondsPerToken <= 0) return null;
  const { top, minContext, precision, reserve } = grid;
  const cells = Math.floor((top - minContext) / precision);
  if (cells < 1 || cells > MAX_CELLS) return null;
  const { doublingTokens: d, probeTokens } = promptPrices(costs);
  const rounded = (x: number) => Math.round(2 ** (Math.round(Math.log2(Math.max(1, x)) * 4) / 4));
  const load = rounded(costs.loadSeconds / costs.loads / curve.secondsPerToken);
  const sizes = Array.from({ length: cells + 1 }, (_, k) => top - (cells - k) * precision);
  const needle = sizes.map((size) => {
    const q = size - reserve;
    return probeTokens + q + q * q / (2 * d);
  });
  const limit = Math.min(0.95, Math.max(0.01, grid.worksAtLimit ?? WORKS_AT_LIMIT));
  const share = atLimit ? limit : FULL_WORKS_AT_DECLARED;
  return { sizes, needle, load, topWeight: share * cells / (1 - share) };
}

/**
 * The plan's state for bounds between grid sizes: `lo` the largest grid index at or below the pass
 * (-1: none), `hi` the smallest at or above the failure (null: none below the full length), and
 * whether the pass is a confirmed one exactly at its grid size.
 */
export function gridState(
  prices: WorkingPrices,
  pass: number | null,
  fail: number | null,
  confirmed: boolean,
): { lo: number; hi: number | null; confirmed: boolean } {
  const { sizes } = prices;
  const top = sizes[sizes.length - 1]!;
  const lo = pass === null ? -1 : sizes.findLastIndex((size) => size <= pass);
  const hi = fail === null || fail > top ? null : sizes.findIndex((size) => size >= fail);
  return { lo, hi, confirmed: confirmed && lo >= 0 && sizes[lo] === pass };
}

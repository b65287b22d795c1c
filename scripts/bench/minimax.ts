/**
 * The least worst-case cost any search can guarantee on a model, for the bench: a search does
 * not know the truth, so it cannot do as well as the oracle lower bound on every truth; this is
 * the best it can promise over all truths, in the emulator's virtual time, by dynamic
 * programming over what a search has learnt so far.
 *
 * The sizes are a grid in units of the precision: minContext, minContext + p, ..., and the cap
 * (coarsened to at most {@link MAX_UNITS} cells when the precision is finer: a coarser precision
 * only makes the game easier, so the figure stays a bound). A limit is proven when its cell is:
 * a success at a grid point and a failure at the next (or the point is the cap, or minContext
 * fails: none).
 *
 * - Loadable phase: the loadable size is unknown on the grid. A test is a load (a success costs
 *   the load and its unload; a failure the profile's refusal, or, for a model that fits loads down,
 *   a load at the fitted size, which tells the size: priced as if it were one cell below) or,
 *   where refusals are guardrail refusals (they come before any progress), a check: a load
 *   cancelled at its first progress report. The phase ends with a real load at the answer.
 * - Working phase, on that instance: the working size is unknown on the grid up to the loadable
 *   size; a test is a needle filling the size up to the reserve (prediction overhead, prefill,
 *   the 7-digit answer). With a prompt cache a needle pays only its tokens beyond the longest
 *   prompt already sent on the instance; without one, all of them. A crash is priced as a failing
 *   needle (no reload), and a failure is a prompt's, never the load size's: both only lower it.
 *   Unless the answer is the loadable size, the answer costs a confirming load and a fresh
 *   full-length needle.
 * The two phases are one game (the adversary picks the loadable size, then the working size), so
 * the figure is the worst case over both, not the sum of two worst cases. It bounds a search's
 * cost on its worst truth, not on each model's truth: on an easy truth a search can spend less.
 *
 * @module
 */

import type { SearchConfig } from "../../src/search/context_search.ts";
import { searchCap } from "../../src/search/context_search.ts";
import type { ModelProfile } from "../emulator/profile.ts";
import { loadMs, prefillMs, refusalMs, TIMING } from "../emulator/timing.ts";
import { needleMs, okLoadMs } from "./lower_bound.ts";

/** Most cells of the grid; a finer precision is coarsened to this. */
export const MAX_UNITS = 400;

const timing = TIMING as unknown as Record<string, number | undefined>;
/** Virtual time of a check that starts: its first progress report, then the cancel. */
export const CHECK_STARTED_MS = (timing.firstProgressMs ?? 500) + (timing.cancelMs ?? 250);

/** The grid of sizes the game is played on, ascending: minContext ... cap. */
export function minimaxGrid(config: SearchConfig): number[] {
  const { minContext, precision } = config;
  const cap = searchCap(config);
  if (cap < minContext) return [];
  const cells = Math.ceil((cap - minContext) / precision);
  const unit = precision * Math.max(1, Math.ceil(cells / MAX_UNITS));
  const grid: number[] = [];
  for (let size = minContext; size < cap; size += unit) grid.push(size);
  grid.push(cap);
  return grid;
}

/** Whether a check can tell a refusal from a start on `profile`: refusals come first. */
function checksWork(profile: ModelProfile, fitting: boolean): boolean {
  return !fitting &&
    (profile.noRuntime === true || (profile.refusal ?? "guardrail") === "guardrail");
}

/** The least worst-case virtual time, in ms, any search can guarantee on `profile`. */
export function minimaxMs(profile: ModelProfile, config: SearchConfig): number {
  const grid = minimaxGrid(config);
  const n = grid.length - 1;
  if (n < 0) return 0;
  const reserve = config.reserve;
  const cache = profile.promptCache !== false;
  const fitting = profile.fitAbove !== undefined &&
    (profile.loadFailAbove === undefined || profile.fitAbove < profile.loadFailAbove);
  const size = (k: number) => grid[k] ?? 0;
  const okLoad = grid.map((s) => okLoadMs(profile, s));
  const refused = grid.map((s) => refusalMs(profile, s));
  const prefill = grid.map((s) => prefillMs(profile, 0, s - reserve));
  const pass = grid.map((s) => needleMs(profile, s, s - reserve, true));
  const fail = grid.map((s) => needleMs(profile, s, s - reserve, false));
  const at = (array: ArrayLike<number>, k: number) => array[k] ?? 0;

  // Working phase after a failing needle: (lo, hi) with -1 <= lo < hi <= n, the largest passing
  // and the smallest failing index. Prefill is free with a cache (a longer prompt was sent).
  const w = n + 2;
  const failed = new Float64Array(w * w);
  const confirm = (lo: number) => at(okLoad, lo) + at(pass, lo);
  for (let gap = 1; gap <= n + 1; gap++) {
    for (let lo = -1; lo + gap <= n; lo++) {
      const hi = lo + gap;
      let best = gap === 1 ? (lo === -1 ? 0 : confirm(lo)) : Infinity;
      for (let t = lo + 1; t < hi; t++) {
        const free = cache ? at(prefill, t) : 0;
        const yes = at(pass, t) - free + failed[(t + 1) * w + hi]!;
        const no = at(fail, t) - free + failed[(lo + 1) * w + t]!;
        best = Math.min(best, Math.max(yes, no));
      }
      failed[(lo + 1) * w + hi] = best;
    }
  }
  // Working phase on the loadable instance at index j before any failure: the largest prompt sent
  // is the largest passing one.
  const working = new Float64Array(n + 1);
  const open = new Float64Array(n + 2);
  for (let j = 0; j <= n; j++) {
    open[j + 1] = 0;
    for (let lo = j - 1; lo >= -1; lo--) {
      const sent = cache && lo >= 0 ? at(prefill, lo) : 0;
      let best = Infinity;
      for (let t = lo + 1; t <= j; t++) {
        const yes = at(pass, t) - sent + open[t + 1]!;
        const no = at(fail, t) - sent + failed[(lo + 1) * w + t]!;
        best = Math.min(best, Math.max(yes, no));
      }
      open[lo + 1] = best;
    }
    working[j] = open[0]!;
  }

  // Loadable phase: (lo, hi, real) with -1 <= lo < hi <= n + 1 (hi = n + 1: nothing failed yet);
  // real: the success at lo was a load (not a check).
  const v = n + 3;
  const states = [new Float64Array(v * v), new Float64Array(v * v)];
  const get = (lo: number, hi: number, real: number) => states[real]![(lo + 1) * v + hi]!;
  const fitted = (t: number, lo: number, real: number) => {
    // A load fitted down to one cell below t: that load, then a real one there unless it is lo's.
    if (t === 0) return loadMs(profile, 0) + TIMING.unloadMs;
    const again = real === 1 && lo === t - 1 ? 0 : at(okLoad, t - 1);
    return loadMs(profile, size(t - 1)) + TIMING.unloadMs + again + at(working, t - 1);
  };
  const checks = checksWork(profile, fitting);
  for (let gap = 1; gap <= n + 2; gap++) {
    for (let lo = -1; lo + gap <= n + 1; lo++) {
      const hi = lo + gap;
      for (const real of [0, 1]) {
        let best = Infinity;
        if (gap === 1) {
          best = lo === -1 ? 0 : (real === 1 ? 0 : at(okLoad, lo)) + at(working, lo);
        }
        for (let t = lo + 1; t < hi; t++) {
          const no = fitting ? fitted(t, lo, real) : at(refused, t) + get(lo, t, real);
          best = Math.min(best, Math.max(at(okLoad, t) + get(t, hi, 1), no));
          if (checks) {
            const refusedCheck = at(refused, t) + get(lo, t, real);
            best = Math.min(best, Math.max(CHECK_STARTED_MS + get(t, hi, 0), refusedCheck));
          }
        }
        states[real]![(lo + 1) * v + hi] = best;
      }
    }
  }
  return get(-1, n + 1, 0);
}

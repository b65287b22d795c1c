/**
 * The least EXPECTED cost any search can achieve on a model, for the bench: the truth is drawn
 * from a prior over the limits such a model can have, and the figure is the Bayes-optimal
 * search's average over it, in the emulator's virtual time; next to it, over the same prior, the
 * oracle lower bound's average (`lower_bound.ts`) and the reference algorithm's
 * (`reference_search.ts`). Where the best average is above 1.5x the lower bound's, no search
 * can be within 1.5x of the lower bound on average over such truths; where it is above half
 * the reference's, no search can take half the reference's time on average.
 *
 * The prior, on a grid in units of the precision (minContext, minContext + p, ..., the cap;
 * coarsened to at most {@link MAX_UNITS} cells when the precision is finer, which only makes
 * the sizes easier to find): the loadable size L uniform on the grid, and given L the working
 * size W uniform on the grid up to L. The model keeps its cost profile (load and refusal prices,
 * prefill and generation speed, prompt cache or not, refusal kind, how a failing needle
 * answers); its other behaviours (brokenAbove, crashAbove, fitUpTo, fitAbove, noRuntime, noisy
 * band) are dropped ({@link priorProfile}): each truth is only a loadable and a working size.
 *
 * What a search must prove (the lower bound's rule, on the grid): a real successful load at L
 * and a failed load (or refused check) at the next grid size unless L is the cap; a full-length
 * needle passing on an instance at W = L, or, for W < L, a needle failing at the next grid size
 * and a confirming load at W with a fresh full-length needle passing there.
 *
 * The figure is a lower bound of the expected cost of every search, including one that
 * interleaves needles with its loads, because it is the sum of two games, each priced no higher
 * than the real one:
 * - Loads, with W revealed: fix W; the loads and checks of any search, except its loads below W
 *   that carry a passing fresh needle and its confirming load at W (given W, they tell nothing of
 *   L), form a decision tree over L, whose prior is then P(L | W), proportional to 1 / (L + 1)
 *   on [W, cap], and which ends with the proof of L. So they cost at least the Bayes-optimal
 *   such tree: {@link loadGame} with those weights, averaged over W. A load costs the load and
 *   its unload, a refusal the profile's refusal, and, where refusals are guardrail refusals
 *   (they come before any progress), a check that starts costs its first progress report and
 *   the cancel.
 * - Needles, L known: fix L; the needles of any search and the loads the first game left out
 *   form a decision tree over W; it costs at least the Bayes-optimal tree of {@link workGame},
 *   in which every instance shares one prompt cache that holds the longest needle prompt sent so
 *   far (the emulator reuses only the common prefix with the previous prompt and its answer on
 *   the same instance, and a probe's prompt is a prefix of its haystack and a question: never
 *   longer), a needle pays its overhead, the prefill of its tokens beyond that prompt, and its
 *   shortest answer, and the instance at L is at hand for free. A test may also be made as a
 *   confirming load below L (a load there, a fresh needle, cold): passing, it costs the load too
 *   and confirms that size; failing, only its needle (the load, above W, is the first game's).
 *   Unless W = L, the game ends with a confirmation at W: that test, or a load and a fresh
 *   full-length needle.
 * The sum of the two optimal games is at most the optimal joint game, which no search beats.
 * The phased figure (loads first, W unknown, uniform prior on L) is reported too: it is what a
 * search that finds L before it sends a needle can reach at best.
 * Each game's optimal play can be followed on one truth ({@link bestTruthMs}): its mean over the
 * prior is the best average, and over a sample of truths it weighs our search
 * (`ours_average.ts`) like for like.
 *
 * @module
 */

import type { SearchConfig } from "../../src/search/context_search.ts";
import { searchCap } from "../../src/search/context_search.ts";
import type { ModelProfile } from "../emulator/profile.ts";
import { cancelledLoadMs, generateMs, prefillMs, refusalMs, TIMING } from "../emulator/timing.ts";
import { countTokens } from "../emulator/tokenizer.ts";
import { lowerBoundMs, lowerBoundSteps, needleMs, okLoadMs, SANITY_TOKENS } from "./lower_bound.ts";

/** Most cells of the grid; a finer precision is coarsened to this. */
export const MAX_UNITS = 200;

/** Virtual time of a check that starts: its first progress report, then the cancel. */
export const CHECK_STARTED_MS = cancelledLoadMs();

/** The grid the prior lives on, ascending: minContext ... cap. */
export function priorGrid(config: SearchConfig): number[] {
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

/** The profile with only its cost model: the behaviours the prior replaces are dropped. */
export function priorProfile(profile: ModelProfile): ModelProfile {
  const {
    brokenAbove: _broken,
    crashAbove: _crash,
    fitUpTo: _fitUpTo,
    fitAbove: _fitAbove,
    noRuntime: _noRuntime,
    noisyBand: _noisy,
    loadFailAbove: _loadFail,
    needleFailAbove: _cliff,
    ...rest
  } = profile;
  return rest;
}

/** Whether a check tells a refusal from a start: refusals are guardrail ones, before progress. */
export function checksWork(profile: ModelProfile): boolean {
  return (profile.refusal ?? "guardrail") === "guardrail";
}

/**
 * A prior over the truths: `uniform`, W uniform on the grid up to L; `shelf`, W = L in one case
 * in two (a shelf where half the models work at their loadable size), else uniform below it.
 */
export type PriorKey = "uniform" | "shelf";

/** P(L = i) on a grid of n + 1 sizes (uniform under both priors). */
export const priorL = (n: number) => 1 / (n + 1);

/** The weight of W = L against one grid cell below it, given L = grid index i. */
export function topWeight(i: number, prior: PriorKey = "uniform"): number {
  return prior === "shelf" ? Math.max(1, i) : 1;
}

/** P(W = k | L = i) for k <= i. */
export function priorW(i: number, k = 0, prior: PriorKey = "uniform"): number {
  const top = topWeight(i, prior);
  return (k === i ? top : 1) / (i + top);
}

/** The prices the games use, per grid index. */
export interface GridPrices {
  n: number;
  /** A successful load and its unload. */
  okLoad: number[];
  /** A refused load (or a refused check). */
  refused: number[];
  /** Prefill of a full-length needle prompt from an empty cache. */
  prefill: number[];
  /** A full-length needle from an empty cache, passing / failing. */
  pass: number[];
  fail: number[];
  /** A check that starts, where checks work; null where they do not. */
  check: number | null;
  /** Whether the prompt cache works. */
  cache: boolean;
}

/** The prices of the games on `grid` for `profile` (already through {@link priorProfile}). */
export function gridPrices(profile: ModelProfile, config: SearchConfig, grid: number[]) {
  const q = (s: number) => s - config.reserve;
  const prices: GridPrices = {
    n: grid.length - 1,
    okLoad: grid.map((s) => okLoadMs(profile, s)),
    refused: grid.map((s) => refusalMs(profile, s)),
    prefill: grid.map((s) => prefillMs(profile, 0, q(s))),
    pass: grid.map((s) => needleMs(profile, s, q(s), true)),
    fail: grid.map((s) => needleMs(profile, s, q(s), false)),
    check: checksWork(profile) ? CHECK_STARTED_MS : null,
    cache: profile.promptCache !== false,
  };
  return prices;
}

const at = (array: ArrayLike<number>, k: number) => array[k] ?? 0;

/** A game's value from a state, and what its optimal play costs on one truth. */
export interface LoadGame {
  /** The least expected cost from (a, hi, real). */
  (a: number, hi: number, real: boolean): number;
  /** What the optimal play from (a, hi, real) costs when L is grid index `i`. */
  cost(a: number, hi: number, real: boolean, i: number): number;
}

/**
 * The load game: the least expected cost of proving L, for every state (a, hi, real): L known to
 * lie in [a, hi - 1] with weights `weight`, real whether a real load succeeded at a. Returns a
 * lookup; the answer from the start is `value(a0, n + 1, false)`. `head`: the weight of the
 * lowest size a of the states the game starts from and that refusals lead to (where W, revealed,
 * is a and the prior gives W = L its own weight); a success at t leads to states weighed by
 * `weight` alone.
 */
export function loadGame(
  prices: GridPrices,
  weight: (i: number) => number,
  head: (i: number) => number = weight,
): LoadGame {
  const { n, okLoad, refused, check } = prices;
  const v = n + 2;
  // Prefix sums of the weights: mass(a, hi) = sum over [a, hi).
  const sums = new Float64Array(n + 2);
  for (let i = 0; i <= n; i++) sums[i + 1] = sums[i]! + weight(i);
  const mass = (a: number, hi: number) => sums[hi]! - sums[a]!;
  // Tables 0/1: states weighed by `weight` (not real / real); 2/3: with `head` at a.
  const states = [0, 1, 2, 3].map(() => new Float64Array(v * v));
  // The optimal move of each state: its size, negative for a check.
  const moves = [0, 1, 2, 3].map(() => new Int32Array(v * v));
  const get = (a: number, hi: number, table: number) => states[table]![a * v + hi]!;
  for (const headed of [0, 2]) {
    for (let gap = 1; gap <= n + 1; gap++) {
      for (let a = 0; a + gap <= n + 1; a++) {
        const hi = a + gap;
        const total = headed === 0 ? mass(a, hi) : head(a) + mass(a + 1, hi);
        for (const real of [0, 1]) {
          let best: number;
          let move = 0;
          if (gap === 1) best = real === 1 ? 0 : at(okLoad, a);
          else {
            best = Infinity;
            for (let t = a + 1; t < hi; t++) {
              const up = mass(t, hi) / total;
              const down = 1 - up;
              const no = down * (at(refused, t) + get(a, t, headed + real));
              const load = up * (at(okLoad, t) + get(t, hi, 1)) + no;
              if (load < best) [best, move] = [load, t];
              if (check === null) continue;
              const checked = up * (check + get(t, hi, 0)) + no;
              if (checked < best) [best, move] = [checked, -t];
            }
          }
          states[headed + real]![a * v + hi] = best;
          moves[headed + real]![a * v + hi] = move;
        }
      }
    }
  }
  const value = (a: number, hi: number, real: boolean) => get(a, hi, 2 + (real ? 1 : 0));
  const cost = (a: number, hi: number, real: boolean, i: number) => {
    let ms = 0;
    let r = 2 + (real ? 1 : 0);
    while (hi - a > 1) {
      const move = moves[r]![a * v + hi]!;
      const t = Math.abs(move);
      if (i < t) [ms, hi] = [ms + at(refused, t), t];
      else if (move < 0) [ms, a, r] = [ms + (check ?? 0), t, 0];
      else [ms, a, r] = [ms + at(okLoad, t), t, 1];
    }
    return ms + (r % 2 === 1 ? 0 : at(okLoad, a));
  };
  return Object.assign(value, { cost });
}

/** The needle game's value per loadable index, and what its optimal play costs on one truth. */
export interface WorkGame {
  /** The least expected cost of proving W, per loadable index j. */
  value: Float64Array;
  /** What the optimal play costs when L is grid index `j` and W is grid index `k`. */
  cost(j: number, k: number): number;
}

/**
 * The needle game: for each loadable index j, the least expected cost of proving W, uniform on
 * [0, j], with needles on the instance at j (priced with the shared cache) or tests made as
 * confirming loads, and the confirmation. Returns the value per j.
 */
export function workGame(
  prices: GridPrices,
  top: (j: number) => number = () => 1,
): WorkGame {
  const { n, okLoad, prefill, pass, fail, cache } = prices;
  const confirm = (k: number) => at(okLoad, k) + at(pass, k);
  // The optimal move of a state: 2t for a needle at t, 2t + 1 for a confirming load there.
  const pick = (best: number, move: number, needle: number, load: number, t: number) =>
    needle < best && needle <= load
      ? [needle, 2 * t]
      : load < best
      ? [load, 2 * t + 1]
      : [best, move];
  // After a failing needle: (lo, hi, conf), -1 <= lo < hi <= n, W in [max(lo, 0), hi - 1]; conf:
  // the pass at lo was a confirming load. Every later prompt is shorter than one sent: no prefill.
  const w = n + 2;
  const failed = [new Float64Array(w * w), new Float64Array(w * w)];
  const failedMoves = [new Int32Array(w * w), new Int32Array(w * w)];
  const getFailed = (lo: number, hi: number, conf: number) => failed[conf]![(lo + 1) * w + hi]!;
  for (let hi = 1; hi <= n; hi++) {
    for (let lo = hi - 1; lo >= -1; lo--) {
      const a = Math.max(lo, 0);
      for (const conf of lo >= 0 ? [0, 1] : [0]) {
        let best: number;
        let move = 0;
        if (a === hi - 1) best = conf === 1 ? 0 : confirm(a);
        else {
          best = Infinity;
          const m = hi - a;
          for (let t = lo + 1; t < hi; t++) {
            const up = (hi - t) / m;
            const down = (t - a) / m;
            const free = cache ? at(prefill, t) : 0;
            const stay = down > 0 ? getFailed(lo, t, conf) : 0;
            const needle = up * (at(pass, t) - free + getFailed(t, hi, 0)) +
              down * (at(fail, t) - free + stay);
            const load = up * (at(okLoad, t) + at(pass, t) + getFailed(t, hi, 1)) +
              down * (at(fail, t) + stay);
            [best, move] = pick(best, move, needle, load, t) as [number, number];
          }
        }
        failed[conf]![(lo + 1) * w + hi] = best;
        failedMoves[conf]![(lo + 1) * w + hi] = move;
      }
    }
  }
  // Before any failure, on the instance at j: (lo, conf), W in [max(lo, 0), j], the longest prompt
  // sent is lo's.
  const work = new Float64Array(n + 1);
  const open = [new Float64Array(n + 2), new Float64Array(n + 2)];
  const openMoves = new Int32Array((n + 1) * 2 * w);
  for (let j = 0; j <= n; j++) {
    open[0]![j + 1] = 0;
    open[1]![j + 1] = 0;
    // W = j weighs `top(j)` cells; every size below it, one.
    const r = j === 0 ? 1 : top(j);
    for (let lo = j - 1; lo >= -1; lo--) {
      const a = Math.max(lo, 0);
      const m = j - a + r;
      const sent = cache && lo >= 0 ? at(prefill, lo) : 0;
      for (const conf of lo >= 0 ? [0, 1] : [0]) {
        let best = Infinity;
        let move = 0;
        for (let t = lo + 1; t <= j; t++) {
          const up = (j - t + r) / m;
          const down = (t - a) / m;
          const stay = down > 0 ? getFailed(lo, t, conf) : 0;
          const needle = up * (at(pass, t) - sent + open[0]![t + 1]!) +
            down * (at(fail, t) - sent + stay);
          const load = t === j ? Infinity : up * (at(okLoad, t) + at(pass, t) + open[1]![t + 1]!) +
            down * (at(fail, t) + stay);
          [best, move] = pick(best, move, needle, load, t) as [number, number];
        }
        open[conf]![lo + 1] = best;
        openMoves[(j * 2 + conf) * w + lo + 1] = move;
      }
    }
    work[j] = open[0]![0]!;
  }
  const cost = (j: number, k: number) => {
    let [ms, lo, conf] = [0, -1, 0];
    let hi = j + 1;
    // Passes on the instance at j (or confirming loads below it) until the first failure.
    while (lo < j) {
      const move = openMoves[(j * 2 + conf) * w + lo + 1]!;
      const [t, load] = [move >> 1, (move & 1) === 1];
      const sent = cache && lo >= 0 ? at(prefill, lo) : 0;
      if (k < t) {
        [ms, hi] = [ms + at(fail, t) - (load ? 0 : sent), t];
        break;
      }
      ms += load ? at(okLoad, t) + at(pass, t) : at(pass, t) - sent;
      [lo, conf] = [t, load ? 1 : 0];
    }
    if (lo === j) return ms;
    for (;;) {
      const a = Math.max(lo, 0);
      if (a === hi - 1) return ms + (conf === 1 ? 0 : confirm(a));
      const move = failedMoves[conf]![(lo + 1) * w + hi]!;
      const [t, load] = [move >> 1, (move & 1) === 1];
      const free = cache ? at(prefill, t) : 0;
      if (k < t) [ms, hi] = [ms + at(fail, t) - (load ? 0 : free), t];
      else {
        ms += load ? at(okLoad, t) + at(pass, t) : at(pass, t) - free;
        [lo, conf] = [t, load ? 1 : 0];
      }
    }
  };
  return { value: work, cost };
}

/** The best average and its parts, in ms. */
export interface BestAverage {
  /** The least expected cost of any search (loads with W revealed, plus needles). */
  ms: number;
  /** The least expected cost of a search that finds L before its first needle. */
  phasedMs: number;
  /** The load game's part of `ms`. */
  loadMs: number;
  /** The needle game's part (needles and confirmations). */
  workMs: number;
}

/** The least expected virtual time, in ms, any search can achieve on `profile` over the prior. */
export function bestAverage(
  profile: ModelProfile,
  config: SearchConfig,
  prior: PriorKey = "uniform",
): BestAverage {
  const grid = priorGrid(config);
  const n = grid.length - 1;
  if (n < 0) return { ms: 0, phasedMs: 0, loadMs: 0, workMs: 0 };
  const prices = gridPrices(priorProfile(profile), config, grid);
  const work = workGame(prices, (j) => topWeight(j, prior)).value;
  let workMs = 0;
  for (let j = 0; j <= n; j++) workMs += priorL(n) * work[j]!;
  // W revealed: P(W = k) = sum over L >= k of P(L) P(W | L); given W = k, L = i weighs
  // P(W = k | L = i): one weight above k, another at k itself.
  const revealed = revealedGame(prices, prior);
  let loadMs = 0;
  let tail = 0;
  for (let k = n; k >= 0; k--) {
    const pW = priorL(n) * (priorW(k, k, prior) + tail);
    loadMs += pW * revealed(k, n + 1, false);
    tail += priorW(k, -1, prior);
  }
  const phased = loadGame(prices, () => 1)(0, n + 1, false);
  return { ms: loadMs + workMs, phasedMs: phased + workMs, loadMs, workMs };
}

/**
 * What the best average's optimal plays cost on one truth, L = grid[i] and W = grid[k] (k <= i):
 * the load game's with W revealed plus the needle game's with L known. Its mean over the prior is
 * {@link bestAverage}'s `ms`, so that a sample of truths can weigh a search against it like for
 * like.
 */
export function bestTruthMs(
  profile: ModelProfile,
  config: SearchConfig,
  prior: PriorKey = "uniform",
): (i: number, k: number) => number {
  const grid = priorGrid(config);
  const n = grid.length - 1;
  if (n < 0) return () => 0;
  const prices = gridPrices(priorProfile(profile), config, grid);
  const work = workGame(prices, (j) => topWeight(j, prior));
  const revealed = revealedGame(prices, prior);
  return (i, k) => revealed.cost(k, n + 1, false, i) + work.cost(i, k);
}

/**
 * The load game with W revealed as its lowest size: L = i weighs P(W = k | L = i), which is
 * `priorW(i, -1)` above k (W below L) and `priorW(k, k)` at k itself.
 */
function revealedGame(prices: GridPrices, prior: PriorKey): LoadGame {
  return loadGame(prices, (i) => priorW(i, -1, prior), (k) => priorW(k, k, prior));
}

/** The oracle lower bound's virtual time averaged over the prior (behaviours dropped). */
export function averageLowerBoundMs(profile: ModelProfile, config: SearchConfig): number {
  const grid = priorGrid(config);
  const n = grid.length - 1;
  const plain = priorProfile(profile);
  let ms = 0;
  for (let i = 0; i <= n; i++) {
    for (let k = 0; k <= i; k++) {
      const truth = { loadable: grid[i]!, working: grid[k]! };
      ms += priorL(n) * priorW(i) * lowerBoundMs(plain, lowerBoundSteps(truth, config));
    }
  }
  return ms;
}

/** Tokens of the emulator's answer to `2+2=`. */
const SANITY_ANSWER_TOKENS = countTokens(" 4");

/**
 * Virtual time of the reference algorithm on a model (behaviours dropped) that loads up to
 * `loadable` tokens, as the emulator charges it: each bisection's midpoint loads (a success
 * with its unload, a refusal at the profile's price), the `2+2=` on each success of the
 * second, and minContext once when no midpoint passed. W does not change it: `2+2=` passes
 * on every load that keeps its size.
 */
export function referenceMs(profile: ModelProfile, config: SearchConfig, loadable: number) {
  const plain = priorProfile(profile);
  const cap = searchCap(config);
  if (cap < config.minContext) return 0;
  const sanity = TIMING.predictOverheadMs + prefillMs(plain, 0, SANITY_TOKENS) +
    generateMs(plain, SANITY_TOKENS, SANITY_ANSWER_TOKENS);
  const judge = (x: number, chat: boolean) =>
    x <= loadable ? okLoadMs(plain, x) + (chat ? sanity : 0) : refusalMs(plain, x);
  let ms = 0;
  for (const chat of [false, true]) {
    let [lo, hi, passed] = [config.minContext, cap, false];
    while (hi - lo > config.precision) {
      const mid = Math.floor((lo + hi) / 2);
      ms += judge(mid, chat);
      if (mid <= loadable) [lo, passed] = [mid, true];
      else hi = mid;
    }
    if (!passed) {
      ms += judge(config.minContext, chat);
      if (config.minContext > loadable) return ms;
    }
  }
  return ms;
}

/** The reference's virtual time averaged over the prior. */
export function averageReferenceMs(profile: ModelProfile, config: SearchConfig): number {
  const grid = priorGrid(config);
  const n = grid.length - 1;
  let ms = 0;
  for (const size of grid) ms += priorL(n) * referenceMs(profile, config, size);
  return ms;
}

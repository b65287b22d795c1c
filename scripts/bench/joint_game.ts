/**
 * The joint game of a model without a prompt cache and without checks (regime b): loads, needles
 * and confirming loads in one decision tree over (L, W), so that a search may send needles before
 * it has found L and use what they tell of L. `best_average.ts` bounds every search by two games
 * played apart, and credits the load game with W; this one credits a search only with a free
 * instance: a needle at t may be sent once a load at t or above succeeded, at its price on an
 * empty cache, with no reload charged. Everything else is charged as the emulator charges it:
 * every load (a confirming load that fails too), every refusal, every needle.
 *
 * What must be proven is the bench's rule: a real load at L and a refusal at the next grid size
 * (unless L is the cap); for W = L a needle passing at the full length of the instance at L; for
 * W < L a needle failing at the next grid size and a confirming load at W (a load there and a
 * fresh full-length needle passing). A needle at the full length of the largest load is counted
 * as a confirming one (a credit: it runs on a load of that size, but perhaps not on a fresh one).
 *
 * So its value is a lower bound of every search's expected cost on such a model, interleaved or
 * not, and at least the two games' sum. Its cost is a table of (L interval, W interval) states:
 * about 50 million for a grid of 100 sizes, a few minutes of CPU each. It is not part of the
 * bench: `joint_floor.ts` runs it for regime b's floor.
 *
 * @module
 */

import type { GridPrices } from "./best_average.ts";

/** P(W = k | L = i) up to a factor common to all i (L is uniform on the grid). */
export type JointWeight = (i: number, k: number) => number;

/**
 * The least expected cost of a search on the grid of `prices` (no cache, no checks) when (L, W)
 * weigh `w(i, k)` (k <= i; any common factor), in the prices' unit.
 */
export function jointGame(prices: GridPrices, w: JointWeight): number {
  if (prices.cache || prices.check !== null) {
    throw new Error("the joint game is for models without a prompt cache and without checks");
  }
  const { n, okLoad, refused, pass, fail } = prices;
  const m = n + 2;
  // cum[i * m + k]: sum of w(i', k') over i' < i, k' < k, k' <= i'.
  const cum = new Float64Array(m * m);
  for (let i = 0; i <= n; i++) {
    let row = 0;
    for (let k = 0; k <= n + 1; k++) {
      cum[(i + 1) * m + k] = cum[i * m + k]! + row;
      if (k <= i) row += w(i, k);
    }
  }
  const rows = (i0: number, i1: number, k: number) => cum[i1 * m + k]! - cum[i0 * m + k]!;
  /** Mass of L in [i0, i1), W in [k0, k1), W <= L. */
  const mass = (i0: number, i1: number, k0: number, k1: number) =>
    i1 <= i0 || k1 <= k0 ? 0 : rows(i0, i1, k1) - rows(i0, i1, k0);
  const tri = (x: number, y: number) => (y * (y + 1)) / 2 + x;
  const pairs = tri(m - 1, m - 1) + 1;
  const memo = new Float32Array(pairs * pairs * 2).fill(-1);
  const confirm = (k: number) => okLoad[k]! + pass[k]!;

  // State: a the largest load that succeeded (-1: none), hi the smallest refused (n + 1: none),
  // lo the largest passing needle (-1: none), whi the smallest failing one (n + 1: none), conf
  // whether the pass at lo was a confirming one.
  const value = (a: number, hi: number, lo: number, whi: number, conf: number): number => {
    whi = Math.min(whi, hi);
    if (lo >= whi || a >= hi) return 0;
    const k0 = Math.max(lo, 0);
    const i0 = Math.max(a, k0);
    const lSet = hi === a + 1;
    const wSet = whi === k0 + 1;
    if (lSet && wSet) {
      if (k0 === a) return lo === a ? 0 : pass[a]!;
      return conf === 1 && lo === k0 ? 0 : confirm(k0);
    }
    const index = (tri(a + 1, hi) * pairs + tri(lo + 1, whi)) * 2 + conf;
    const known = memo[index]!;
    if (known >= 0) return known;
    const total = mass(i0, hi, k0, whi);
    let best = Infinity;
    if (total <= 0) best = 0;
    else {
      // A load at t: L >= t or not.
      for (let t = a + 1; t < hi && !lSet; t++) {
        const up = mass(Math.max(i0, t), hi, k0, whi) / total;
        if (up <= 0) break;
        let cost = up * (okLoad[t]! + value(t, hi, lo, whi, conf));
        if (up < 1 - 1e-12) {
          cost += (1 - up) * (refused[t]! + value(a, t, lo, Math.min(whi, t), conf));
        }
        if (cost < best) best = cost;
      }
      for (let t = k0 + 1; t < whi && !wSet; t++) {
        // W >= t or not; a passing needle proves L >= t too.
        const passes = mass(Math.max(i0, t), hi, t, whi) / total;
        if (t <= a) {
          // A needle on an instance that holds it.
          const fails = 1 - passes;
          let cost = passes * (pass[t]! + value(a, hi, t, whi, t === a ? 1 : 0));
          if (fails > 1e-12) cost += fails * (fail[t]! + value(a, hi, lo, t, conf));
          if (cost < best) best = cost;
        }
        // A confirming load at t: refused, or loaded and its fresh needle passes or fails.
        const loads = mass(Math.max(i0, t), hi, k0, whi) / total;
        const refusedShare = 1 - loads;
        const fails = loads - passes;
        const b = Math.max(a, t);
        let cost = passes * (okLoad[t]! + pass[t]! + value(b, hi, t, whi, 1));
        if (fails > 1e-12) cost += fails * (okLoad[t]! + fail[t]! + value(b, hi, lo, t, conf));
        if (refusedShare > 1e-12) {
          cost += refusedShare * (refused[t]! + value(a, t, lo, Math.min(whi, t), conf));
        }
        if (cost < best) best = cost;
      }
    }
    memo[index] = best;
    return best;
  };
  return value(-1, n + 1, -1, n + 1, 0);
}

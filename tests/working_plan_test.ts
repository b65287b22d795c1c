/**
 * The working scan's plan without a prompt cache (least expected cost): followed on every truth
 * of a grid it ends on the working size, and on average it costs less than a midpoint bisection
 * and than growing the prompt by half, under the prior it plans for.
 *
 * @module
 */

import assert from "node:assert/strict";
import { gridState, planWorking, type WorkingPrices } from "../src/search/working_plan.ts";

/** Plays `next` against the truth W = grid index `k`: cost, and the index it ends on. */
function play(
  prices: WorkingPrices,
  k: number,
  next: (
    lo: number,
    hi: number | null,
    confirmed: boolean,
  ) => { index: number; load: boolean } | null,
): { cost: number; found: number } {
  const n = prices.sizes.length - 1;
  let [lo, hi, confirmed, cost] = [-1, null as number | null, false, 0];
  for (let steps = 0; steps < 100; steps++) {
    if (lo === n) return { cost, found: lo };
    const step = next(lo, hi, confirmed);
    if (step === null) break;
    assert.ok(step.index > lo && (hi === null || step.index < hi), "inside the bounds");
    cost += prices.needle[step.index]! + (step.load ? prices.load : 0);
    if (k >= step.index) [lo, confirmed] = [step.index, step.load];
    else hi = step.index;
  }
  // Down to one cell: the pass (the grid's first size, which the prior holds working, when none
  // passed yet) is the answer, confirmed by a load unless it was one.
  const found = Math.max(lo, 0);
  if (!confirmed) cost += prices.load + prices.needle[found]!;
  return { cost, found };
}

/** Midpoint bisection on the instance, the full length last. */
const bisection = (n: number) => (lo: number, hi: number | null) => {
  const top = hi ?? n + 1;
  if (top - lo <= 1) return null;
  return { index: Math.floor((lo + top) / 2), load: false };
};

/** Growing by half from the last pass, then the midpoint below the first failure. */
const growth = (n: number) => (lo: number, hi: number | null) => {
  if (hi === null) {
    return { index: Math.min(n, Math.max(lo + 1, Math.floor((lo + 1) * 1.5))), load: false };
  }
  if (hi - lo <= 1) return null;
  return { index: Math.floor((lo + hi) / 2), load: false };
};

Deno.test("the planned scan finds the working size and costs less on average", async (t) => {
  const cases: [number, number, number][] = [[12, 5, 1], [30, 40, 10], [60, 200, 20], [60, 2, 1]];
  for (const [n, load, topWeight] of cases) {
    await t.step(`${n} cells, a load worth ${load}, full length weighing ${topWeight}`, () => {
      // A needle filling size s costs its fixed part and a prefill growing faster than s.
      const sizes = Array.from({ length: n + 1 }, (_, i) => 1000 + 500 * i);
      const needle = sizes.map((s) => 20 + s / 100 + (s / 100) ** 2 / 400);
      const prices: WorkingPrices = { sizes, needle, load, topWeight };
      const weight = (k: number) => (k === n ? topWeight : 1) / (n + topWeight);
      const average = (next: Parameters<typeof play>[2]) => {
        let sum = 0;
        for (let k = 0; k <= n; k++) {
          const { cost, found } = play(prices, k, next);
          assert.equal(found, k, `truth ${k}`);
          sum += weight(k) * cost;
        }
        return sum;
      };
      const planned = average((lo, hi, confirmed) => planWorking(prices, lo, hi, confirmed));
      assert.ok(planned <= average(bisection(n)) + 1e-9, `plan ${planned} vs bisection`);
      assert.ok(planned <= average(growth(n)) + 1e-9, `plan ${planned} vs growth`);
    });
  }
});

Deno.test("bounds between grid sizes map to the cells they prove", () => {
  const prices: WorkingPrices = {
    sizes: [1000, 2000, 3000, 4000],
    needle: [1, 2, 3, 4],
    load: 1,
    topWeight: 1,
  };
  assert.deepEqual(gridState(prices, 2500, 3500, true), { lo: 1, hi: 3, confirmed: false });
  assert.deepEqual(gridState(prices, 2000, null, true), { lo: 1, hi: null, confirmed: true });
  assert.deepEqual(gridState(prices, null, 4500, false), { lo: -1, hi: null, confirmed: false });
  assert.equal(planWorking({ ...prices, sizes: [1000], needle: [1] }, -1, null, false), null);
});

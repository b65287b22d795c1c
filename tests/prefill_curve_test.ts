/**
 * The prefill curve learned from the run's own timings: the fit recovers a machine's speed and
 * the depth at which attention doubles a token's cost, from cold prompts and from cached ones;
 * the search prices its prompts with it (the climb step, the full-length probe) and states it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  climbStep,
  describeCurve,
  fitPrefillCurve,
  type PrefillSample,
  prefillSeconds,
  searchContextLimits,
  uncachedProbeCost,
} from "../src/search/context_search.ts";
import { promptPrices } from "../src/search/plan.ts";
import { DEFAULT_DOUBLING_TOKENS, MAX_PREFILL_SAMPLES } from "../src/search/prefill_curve.ts";
import { PricedProbe } from "../scripts/bench/priced_probe.ts";
import { benchConfig } from "../scripts/bench/regimes.ts";
import { loadFleet } from "./support/emulator.ts";

/** Seconds a machine with speed `perToken` at depth 0, doubling at `doubling`, takes. */
const machine =
  (perToken: number, doubling: number, overhead: number) =>
  ([from, to]: [number, number]): PrefillSample => [
    from,
    to,
    overhead + perToken * ((to - from) + (to * to - from * from) / (2 * doubling)),
  ];

Deno.test("the fit recovers the curve from cold and cached timings", async (t) => {
  for (const doubling of [2048, 8192, 24_576, 131_072]) {
    await t.step(`doubling at ${doubling}`, () => {
      const time = machine(2e-4, doubling, 0.04);
      // A cold prompt, then a climb on the cache, then a cold confirmation.
      const spans: [number, number][] = [[0, 4000], [4000, 9000], [9000, 15000], [0, 12000]];
      const curve = fitPrefillCurve(spans.map(time));
      assert.ok(curve !== null);
      assert.equal(curve.doublingMeasured, true);
      assert.ok(Math.abs(curve.doublingTokens / doubling - 1) < 0.01, `${curve.doublingTokens}`);
      assert.ok(Math.abs(curve.secondsPerToken / 2e-4 - 1) < 0.01);
      assert.ok(Math.abs(curve.overheadSeconds - 0.04) < 0.005);
      assert.ok(
        Math.abs(prefillSeconds(curve, 0, 50_000) / (time([0, 50_000])[2] - 0.04) - 1) < 0.01,
      );
    });
  }
  await t.step("a curve without slowdown is linear", () => {
    const samples = ([[0, 1000], [0, 8000], [8000, 20_000]] as [number, number][])
      .map(([from, to]): PrefillSample => [from, to, (to - from) * 1e-4]);
    const curve = fitPrefillCurve(samples)!;
    assert.equal(describeCurve(curve), "0.10 ms/token, no slowdown with depth");
  });
});

Deno.test("timings at one depth give the speed under the default doubling depth", () => {
  const curve = fitPrefillCurve([[0, 6000, 1.5]])!;
  assert.equal(curve.doublingMeasured, false);
  assert.equal(curve.doublingTokens, DEFAULT_DOUBLING_TOKENS);
  assert.ok(Math.abs(prefillSeconds(curve, 0, 6000) - 1.5) < 1e-9);
  assert.match(describeCurve(curve), /doubling at 32,768 tokens \(assumed\)$/);
  assert.equal(fitPrefillCurve([]), null);
});

Deno.test("a steeper measured curve climbs in smaller steps and prices long prompts higher", () => {
  const costs = (doubling: number) => ({
    ...promptPrices(),
    doublingTokens: doubling,
  });
  assert.ok(climbStep(60_000, 1000, costs(8192)) < climbStep(60_000, 1000, costs(32_768)));
  assert.ok(
    uncachedProbeCost(100_000, costs(8192)) > 2 * uncachedProbeCost(100_000, costs(32_768)),
  );
  assert.equal(MAX_PREFILL_SAMPLES, 32);
});

Deno.test(
  "on a machine slow at long prompts the search fits its curve, states it and keeps the cache",
  async () => {
    const fleet = await loadFleet();
    const base = fleet.find((p) => p.modelKey === "qwen2.5-7b-instruct-1m")!;
    for (const doubling of [8192, 24_576]) {
      const profile = { ...base, prefillSlowdownTokens: doubling };
      const result = await searchContextLimits(benchConfig(profile), new PricedProbe(profile));
      const curve = result.costs.prefillCurve;
      assert.ok(curve, "a curve was fitted");
      assert.equal(curve.doublingMeasured, true);
      assert.ok(Math.abs(curve.doublingTokens / doubling - 1) < 0.05, `${curve.doublingTokens}`);
      // The steep curve must not pass for a missing cache: the cached climb costs its new tokens.
      assert.equal(result.costs.promptCache, true);
      const stated = result.attempts.find((a) => a.decision?.includes("prefill ") === true);
      assert.match(stated?.decision ?? "", /ms\/token, doubling at [\d,]+ tokens/);
    }
  },
);

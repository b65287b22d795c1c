/**
 * Property test over thousands of random truths in every regime: the search never asks for a
 * load whose outcome its earlier answers implied (at or below a size that loaded, at or above one
 * refused, above what auto-fit answered), except to host a probe (the confirming reload, a reload
 * after the instance vanished); its numbers are right; and where the prompt cache works, a crash
 * boundary is settled with at most two reloads after crashes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { seededRandom } from "../src/random.ts";
import { searchContextLimits } from "../src/search/context_search.ts";
import { MAX_REQUESTS } from "../src/search/load_size.ts";
import { crashReloads, impliedLoads } from "../scripts/bench/implied_loads.ts";
import { PricedProbe } from "../scripts/bench/priced_probe.ts";
import { benchConfig, REGIMES } from "../scripts/bench/regimes.ts";
import { type ModelProfile, profileTruth } from "../scripts/emulator/profile.ts";
import type { Attempt } from "../src/search/types.ts";
import { loadFleet } from "./support/emulator.ts";

/** Truths per fleet model and regime. */
const TRUTHS = 40;

/** A random truth for `base`: how it stops loading, and what sets its working limit. */
function randomTruth(base: ModelProfile, random: () => number): ModelProfile {
  const {
    loadFailAbove: _a,
    fitAbove: _b,
    brokenAbove: _c,
    needleFailAbove: _d,
    crashAbove: _e,
    noisyBand: _f,
    noRuntime: _g,
    fitUpTo: _h,
    ...rest
  } = base;
  const profile: ModelProfile = rest;
  const declared = profile.declaredContext;
  const size = (below: number) => 2048 + Math.floor(random() * (below - 2048));
  const loadable = random() < 0.2 ? declared : size(declared);
  const limit = random();
  if (loadable < declared) {
    if (limit < 0.3) profile.fitAbove = loadable;
    else profile.loadFailAbove = loadable;
  }
  const work = random();
  const working = size(loadable);
  if (work < 0.4) {
    profile.needleFailAbove = working;
    profile.needleFailMode = "wrong-number";
  } else if (work < 0.65) profile.crashAbove = working;
  else if (work < 0.75) profile.brokenAbove = working;
  return profile;
}

/** Whether `value` is within the precision below `truth` (and the reserve above for working). */
const within = (value: number | null, truth: number, precision: number, slack = 0) =>
  value !== null && value <= truth + slack && value >= truth - precision - slack;

Deno.test("no load whose outcome was implied, over random truths in every regime", async (t) => {
  const fleet = (await loadFleet()).filter((p) => p.type === "llm" && p.noRuntime !== true);
  const random = seededRandom(16);
  let searches = 0;
  let crashed = 0;
  let mostRequests = 0;
  const worstCrash: { reloads: number; attempts: Attempt[] }[] = [];
  for (const regime of REGIMES) {
    await t.step(`regime ${regime.key}`, async () => {
      for (const model of fleet) {
        for (let n = 0; n < TRUTHS; n++) {
          const profile = randomTruth(regime.apply(model), random);
          const config = benchConfig(profile);
          const result = await searchContextLimits(config, new PricedProbe(profile));
          searches++;
          mostRequests = Math.max(mostRequests, result.state.requests ?? 0);
          const label = `${regime.key} ${JSON.stringify(profile)}`;
          assert.deepEqual(impliedLoads(result.attempts), [], label);
          const truth = profileTruth(profile);
          const p = config.precision;
          assert.ok(within(result.loadable, truth.loadable, p), label);
          assert.ok(within(result.working, truth.working, p, config.reserve), label);
          if (profile.crashAbove !== undefined && profile.promptCache !== false) {
            crashed++;
            const reloads = crashReloads(result.attempts);
            if (reloads > 2) worstCrash.push({ reloads, attempts: result.attempts });
          }
        }
      }
    });
  }
  assert.ok(searches >= 2000, `${searches} searches`);
  // Consistent answers come nowhere near the ceiling that ends a search whose answers never settle.
  assert.ok(mostRequests <= MAX_REQUESTS / 5, `${mostRequests} requests in one search`);
  assert.ok(crashed >= 200, `${crashed} crash boundaries`);
  assert.deepEqual(
    worstCrash.map((w) => w.reloads),
    [],
    "more than two reloads after crashes where the cache works",
  );
});

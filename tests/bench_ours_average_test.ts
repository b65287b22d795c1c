/**
 * Our search's average in the bench: the pricing probe charges what the emulator charges the
 * real probe (the search driven through the SDK against the emulator, on every model of the
 * fleet in every regime and on truths of the prior, takes the same steps and the same virtual
 * time within {@link TOLERANCE}), the best's optimal plays average to the best, and over a whole
 * prior our search answers right and averages above the best.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connectLmStudio } from "../src/lmstudio/client.ts";
import { type Attempt, searchContextLimits } from "../src/search/context_search.ts";
import { benchConfig, REGIMES, virtualProbe } from "../scripts/bench/regimes.ts";
import {
  bestAverage,
  bestTruthMs,
  priorGrid,
  priorL,
  priorW,
} from "../scripts/bench/best_average.ts";
import { oursAverage, PRIOR_KEYS, priorSample } from "../scripts/bench/ours_average.ts";
import { PricedProbe, truthProfile } from "../scripts/bench/priced_probe.ts";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import { CANCEL_HOLD_MS, type Emulator } from "../scripts/emulator/server.ts";
import { loadFleet, withEmulator } from "./support/emulator.ts";

const sdkTest = { sanitizeOps: false, sanitizeResources: false };

/** Largest relative difference allowed between the priced and the emulator's virtual time. */
const TOLERANCE = 0.01;

/** What the search did, step by step, without the texts. */
const steps = (attempts: Attempt[]) =>
  attempts.map((a) => `${a.action} ${a.context} ${a.promptTokens ?? ""} ${a.outcome}`);

/**
 * Runs the search on `profile` through the real probe and SDK against `emulator` and with the
 * pricing probe; asserts the same steps, the same loads and the same virtual time within the
 * tolerance.
 */
async function compare(emulator: Emulator, profile: ModelProfile, label: string) {
  const config = benchConfig(profile);
  // A check's cancel must reach the emulator within its hold (40 ms of real time); on a loaded
  // machine it may come late, and the emulator then loads what the check asked for: a race of
  // the test's clock, not a price. Such a run is made again (a server that ignores the cancel
  // loads it every time and is compared as it is).
  for (let tries = 1;; tries++) {
    const late = await compareOnce(emulator, profile, config, label, tries < RACE_TRIES);
    if (!late) return;
  }
}

/** Runs made again where a check's cancel lost the race with the emulator's hold. */
const RACE_TRIES = 4;

/** One comparison; true (without asserting) where a check's cancel came late and `retry`. */
async function compareOnce(
  emulator: Emulator,
  profile: ModelProfile,
  config: ReturnType<typeof benchConfig>,
  label: string,
  retry: boolean,
): Promise<boolean> {
  emulator.reset();
  const lms = await connectLmStudio(emulator.url);
  try {
    const probe = virtualProbe(lms, emulator, profile.modelKey, "priced");
    const real = await searchContextLimits(config, probe);
    await probe.unload();
    if (retry && profile.cancelIgnored !== true && (real.costs.checksCompleted ?? 0) > 0) {
      return true;
    }
    const stats = emulator.stats();
    const priced = new PricedProbe(profile);
    const played = await searchContextLimits(config, priced);
    await priced.unload();
    assert.deepEqual(steps(played.attempts), steps(real.attempts), label);
    assert.equal(priced.stats.unloads, stats.unloads, label);
    const loadMs = stats.loads.reduce((sum, load) => sum + load.virtualMs, 0);
    assert.equal(priced.stats.loadMs, loadMs, label);
    const difference = (priced.ms - stats.virtualMs) / stats.virtualMs;
    assert.ok(
      Math.abs(difference) <= TOLERANCE,
      `${label}: priced ${priced.ms} ms, emulator ${stats.virtualMs} ms`,
    );
    return false;
  } finally {
    await lms.close();
  }
}

/** A regime's profile, as a key: regimes a and c leave most models alike. */
const behaviour = (p: ModelProfile) =>
  JSON.stringify({ ...p, refusal: p.refusal ?? "guardrail", promptCache: p.promptCache ?? true });

Deno.test(
  "the pricing probe charges what the emulator charges our search on the fleet",
  sdkTest,
  async () => {
    const fleet = (await loadFleet()).filter((p) => p.type === "llm");
    const seen = new Set<string>();
    for (const { key: regime, apply } of REGIMES) {
      const profiles = fleet.map(apply).filter((p) => !seen.has(behaviour(p)));
      for (const profile of profiles) seen.add(behaviour(profile));
      await withEmulator(profiles, async (emulator) => {
        for (const profile of profiles) {
          await compare(emulator, profile, `${regime}: ${profile.modelKey}`);
        }
      }, { cancelHoldMs: CANCEL_HOLD_MS });
    }
    // Every behaviour of the fleet was played: refusals early and late, fits, crashes, a band.
    assert.ok(seen.size > fleet.length, `${seen.size} profiles`);
  },
);

Deno.test(
  "the pricing probe charges what the emulator charges our search on truths of the prior",
  sdkTest,
  async () => {
    const fleet = (await loadFleet()).filter((p) => p.type === "llm");
    const picks = ["qwen2.5-7b-instruct", "llama-3.3-70b-instruct", "gemma-3-12b-it"];
    for (const { key: regime, apply } of REGIMES) {
      if (regime === "c") continue;
      // L a third of the way up the grid; W a quarter of the way below it, and W = L.
      const profiles = fleet.filter((p) => picks.includes(p.modelKey)).flatMap((p) => {
        const profile = apply(p);
        const config = benchConfig(profile);
        const grid = priorGrid(config);
        const i = Math.floor(grid.length / 3);
        return [Math.floor(i / 4), i].map((k) => ({
          ...truthProfile(profile, config, { loadable: grid[i]!, working: grid[k]! }),
          modelKey: `${p.modelKey}-${k}`,
        }));
      });
      // And a server that loads what a check cancels.
      const first = profiles[1]!;
      profiles.push({ ...first, modelKey: `${first.modelKey}-ignored`, cancelIgnored: true });
      await withEmulator(profiles, async (emulator) => {
        for (const profile of profiles) {
          await compare(emulator, profile, `${regime}: ${profile.modelKey}`);
        }
      }, { cancelHoldMs: CANCEL_HOLD_MS });
    }
  },
);

Deno.test("the best's optimal plays, averaged over the prior, cost the best average", async () => {
  const fleet = (await loadFleet()).filter((p) => p.type === "llm");
  for (const { key: regime, apply } of REGIMES) {
    for (const profile of fleet.map(apply).slice(0, 5)) {
      for (const prior of PRIOR_KEYS) {
        const config = benchConfig(profile);
        const n = priorGrid(config).length - 1;
        const truthMs = bestTruthMs(profile, config, prior);
        let average = 0;
        let mass = 0;
        for (let i = 0; i <= n; i++) {
          for (let k = 0; k <= i; k++) {
            const weight = priorL(n) * priorW(i, k, prior);
            average += weight * truthMs(i, k);
            mass += weight;
          }
        }
        const best = bestAverage(profile, config, prior).ms;
        const label = `${regime} ${prior}: ${profile.modelKey}`;
        assert.ok(Math.abs(mass - 1) < 1e-9, label);
        assert.ok(Math.abs(average - best) <= 1e-6 * best, label);
      }
    }
  }
});

Deno.test("over a whole prior our search answers right and averages above the best", async () => {
  const fleet = (await loadFleet()).filter((p) => p.type === "llm");
  // The 8k model's prior is small enough to play out whole.
  const small = fleet.find((p) => p.modelKey === "gemma-2-9b-it")!;
  for (const { key: regime, apply } of REGIMES) {
    const profile = apply(small);
    const config = benchConfig(profile);
    const sample = priorSample(config);
    assert.ok(sample.exact, "the whole prior");
    const average = await oursAverage(profile, config, sample);
    const label = `${regime}: ours ${average.ours}, best ${average.best}`;
    assert.equal(average.wrong, 0, label);
    assert.equal(average.runs, sample.truths.length);
    assert.ok(Math.abs(average.best - bestAverage(profile, config).ms) < 1e-6 * average.best);
    assert.ok(average.ours >= average.best && average.best >= average.lb, label);
  }
  // A sample of a large prior: the same truths for every average, drawn the same every time.
  const large = benchConfig(fleet[0]!);
  const sample = priorSample(large, "uniform", 50);
  assert.equal(sample.exact, false);
  assert.deepEqual(priorSample(large, "uniform", 50), sample);
  assert.ok(sample.truths.every((t) => t.k <= t.i && t.working <= t.loadable));
});

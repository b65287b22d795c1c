/**
 * The bench's bounds against the emulator: the oracle lower bound's steps, replayed through the
 * real probe and SDK on the emulator, turn out as they say and cost what the bound prices (plus
 * only the tokens the emulator's answers have beyond the shortest one); and the minimax lies
 * between the cheapest proof of the worst truth and what a plain bisection spends on its worst
 * truth.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connectLmStudio } from "../src/lmstudio/client.ts";
import { LmStudioProbe } from "../src/probe/lmstudio_probe.ts";
import type { SearchConfig } from "../src/search/context_search.ts";
import { DEFAULT_MIN_CONTEXT, defaultPrecision, RESERVE_TOKENS } from "../src/lmstrix.ts";
import {
  ANSWER_TOKENS,
  failedLoadMs,
  lowerBoundMs,
  type LowerBoundStep,
  lowerBoundSteps,
  needleMs,
  okLoadMs,
  profileLimits,
} from "../scripts/bench/lower_bound.ts";
import { CHECK_STARTED_MS, minimaxGrid, minimaxMs } from "../scripts/bench/minimax.ts";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import { generateMs, loadMs, prefillMs, refusalMs, TIMING } from "../scripts/emulator/timing.ts";
import { loadFleet, withEmulator } from "./support/emulator.ts";

const sdkTest = { sanitizeOps: false, sanitizeResources: false };

/** The bench's three regimes. */
const REGIMES: Record<string, (p: ModelProfile) => ModelProfile> = {
  a: (p) => ({ ...p, refusal: "guardrail", promptCache: true }),
  b: (p) => ({ ...p, refusal: "engine", promptCache: false }),
  c: (p) => ({ ...p }),
};

function configOf(profile: ModelProfile): SearchConfig {
  return {
    declared: profile.declaredContext,
    minContext: Math.min(DEFAULT_MIN_CONTEXT, profile.declaredContext),
    precision: defaultPrecision(profile.declaredContext),
    reserve: RESERVE_TOKENS,
  };
}

/** Tokens of the answer the bound prices for a prediction step. */
function pricedTokens(profile: ModelProfile, step: LowerBoundStep): number {
  if (step.kind === "sanity") return 1;
  if (step.kind !== "needle") return 0;
  const crashed = profile.crashAbove !== undefined && step.promptTokens > profile.crashAbove;
  if (step.passes) return ANSWER_TOKENS;
  return crashed || profile.needleFailMode === "empty" ? 0 : ANSWER_TOKENS;
}

Deno.test(
  "the lower bound's steps replay on the emulator as they say, at their price",
  sdkTest,
  async () => {
    const fleet = (await loadFleet()).filter((p) => p.type === "llm");
    for (const [regime, apply] of Object.entries(REGIMES)) {
      const profiles = fleet.map(apply);
      await withEmulator(profiles, async (emulator) => {
        for (const profile of profiles) {
          const config = configOf(profile);
          const steps = lowerBoundSteps(profileLimits(profile, config), config);
          const label = `${regime}: ${profile.modelKey}`;
          emulator.reset();
          const lms = await connectLmStudio(emulator.url);
          try {
            const probe = new LmStudioProbe(lms, profile.modelKey, {
              seed: 7,
              runId: "lb",
              now: () => emulator.now(),
            });
            const predicted: LowerBoundStep[] = [];
            for (const step of steps) {
              const where = `${label}: ${JSON.stringify(step)}`;
              if (step.kind === "load") {
                const outcome = await probe.load(step.context);
                const ok = outcome.kind === "loaded" && outcome.actual >= step.context;
                assert.equal(ok, step.ok, where);
              } else if (step.kind === "sanity") {
                assert.equal((await probe.sanity()).pass, false, where);
                predicted.push(step);
              } else {
                const answer = await probe.needle(step.promptTokens, { fresh: true, depth: 0.5 });
                // Inside a noisy band the bound assumes the luckiest needle, one that fails.
                const band = profile.noisyBand !== undefined &&
                  step.promptTokens <= (profile.needleFailAbove ?? 0);
                if (!band || step.passes) assert.equal(answer.pass, step.passes, where);
                predicted.push(step);
              }
            }
            await probe.unload();
          } finally {
            await lms.close();
          }
          const stats = emulator.stats();
          assert.equal(stats.loads.length, steps.filter((s) => s.kind === "load").length, label);
          assert.equal(stats.predictions.length, steps.filter((s) => s.kind !== "load").length);
          let extra = 0;
          const predictions = steps.filter((s) => s.kind !== "load");
          for (const [i, record] of stats.predictions.entries()) {
            const step = predictions[i]!;
            if (step.kind === "needle") {
              // The probe fills a prompt to its length within a token or two.
              const short = step.promptTokens - record.promptTokens;
              assert.ok(short >= 0 && short <= 2, `${label}: prompt ${record.promptTokens}`);
              extra -= prefillMs(profile, record.promptTokens, step.promptTokens);
            }
            const tokens = record.predictedTokens - pricedTokens(profile, step);
            assert.ok(tokens >= 0, `${label}: an answer shorter than the bound's`);
            extra += generateMs(profile, record.promptTokens, tokens);
          }
          const replayed = stats.loads.reduce((sum, l) => sum + l.virtualMs, 0) +
            stats.predictions.reduce((sum, p) => sum + p.virtualMs, 0) +
            stats.unloads * TIMING.unloadMs;
          const bound = lowerBoundMs(profile, steps);
          const rounding = stats.loads.length + stats.predictions.length + stats.unloads;
          assert.ok(bound <= replayed + rounding, `${label}: ${bound} > ${replayed}`);
          assert.ok(
            Math.abs(replayed - bound - extra) <= rounding,
            `${label}: replayed ${replayed}, bound ${bound} + longer answers ${extra}`,
          );
        }
      });
    }
  },
);

/**
 * What a search pays on the grid when the truth is the loadable index `i` (-1: nothing loads) and
 * the working index `k` (-1: nothing works), with the minimax's cost model: by the cheapest proof
 * (`oracle`), or by bisecting with checks (where they work) or loads, then with needles.
 */
function gridCosts(profile: ModelProfile, config: SearchConfig) {
  const grid = minimaxGrid(config);
  const n = grid.length - 1;
  const size = (t: number) => grid[t] ?? 0;
  const q = (t: number) => size(t) - config.reserve;
  const cache = profile.promptCache !== false;
  const fitting = profile.fitAbove !== undefined &&
    (profile.loadFailAbove === undefined || profile.fitAbove < profile.loadFailAbove);
  const checks = !fitting &&
    (profile.noRuntime === true || (profile.refusal ?? "guardrail") === "guardrail");
  const failedLoad = (i: number, t: number) =>
    fitting ? loadMs(profile, i < 0 ? 0 : size(i)) + TIMING.unloadMs : refusalMs(profile, size(t));
  const cold = (t: number, pass: boolean) => needleMs(profile, size(t), q(t), pass);
  const confirm = (k: number) => okLoadMs(profile, size(k)) + cold(k, true);
  const oracle = (i: number, k: number) => {
    if (i < 0) return failedLoad(i, 0);
    const loadable = (i < n ? failedLoad(i, i + 1) : 0) + okLoadMs(profile, size(i));
    if (k === i) return loadable + cold(i, true);
    if (k < 0) return loadable + cold(0, false);
    return loadable + cold(k + 1, false) + confirm(k);
  };
  const bisect = (i: number, k: number) => {
    let cost = 0;
    let [lo, hi, real] = [-1, n + 1, false];
    while (hi - lo > 1) {
      const t = Math.floor((lo + hi) / 2);
      if (t <= i) {
        cost += checks ? CHECK_STARTED_MS : okLoadMs(profile, size(t));
        [lo, real] = [t, !checks];
      } else {
        cost += checks ? refusalMs(profile, size(t)) : failedLoad(i, t);
        hi = t;
      }
    }
    if (lo < 0) return cost;
    if (!real) cost += okLoadMs(profile, size(lo));
    let [wlo, whi, sent] = [-1, lo + 1, 0];
    while (whi - wlo > 1) {
      const t = Math.floor((wlo + whi) / 2);
      const pass = t <= k;
      cost += needleMs(profile, size(t), q(t), pass, cache ? Math.min(sent, q(t)) : 0);
      sent = Math.max(sent, q(t));
      if (pass) wlo = t;
      else whi = t;
    }
    return wlo < 0 || wlo === lo ? cost : cost + confirm(wlo);
  };
  return { n, oracle, bisect };
}

Deno.test("the minimax lies between the worst truth's cheapest proof and bisection's worst", () => {
  return loadFleet().then((fleet) => {
    for (const [regime, apply] of Object.entries(REGIMES)) {
      for (const profile of fleet.filter((p) => p.type === "llm").map(apply)) {
        const config = configOf(profile);
        const { n, oracle, bisect } = gridCosts(profile, config);
        let [proof, bisection] = [0, 0];
        for (let i = -1; i <= n; i++) {
          for (let k = -1; k <= i; k++) {
            proof = Math.max(proof, oracle(i, k));
            bisection = Math.max(bisection, bisect(i, k));
          }
        }
        const minimax = minimaxMs(profile, config);
        const label = `${regime}: ${profile.modelKey} ${proof} <= ${minimax} <= ${bisection}`;
        assert.ok(proof <= minimax + 1e-6 && minimax <= bisection + 1e-6, label);
        // A game worth playing: the search's choices save time on its worst truth.
        assert.ok(minimax < bisection, label);
      }
    }
  });
});

Deno.test("the minimax is the game's value on a grid small enough to play out in full", () => {
  // Every strategy, against every truth: a recursion over what is known, with the largest
  // prompt sent tracked as it is, not summarised.
  const profile: ModelProfile = {
    modelKey: "tiny",
    displayName: "tiny",
    path: "t/tiny.gguf",
    type: "llm",
    format: "gguf",
    architecture: "llama",
    paramsString: "7B",
    quantization: "Q4_K_M",
    sizeBytes: 4_000_000_000,
    declaredContext: 8192,
  };
  for (const extra of [{}, { refusal: "engine" as const, promptCache: false }]) {
    const p = { ...profile, ...extra };
    const config: SearchConfig = {
      declared: 8192,
      minContext: 2048,
      precision: 1536,
      reserve: 64,
    };
    const grid = minimaxGrid(config);
    assert.deepEqual(grid, [2048, 3584, 5120, 6656, 8192]);
    assert.ok(Math.abs(minimaxMs(p, config) - playOut(p, config, grid)) < 1e-6);
  }
});

/** The value of the game by plain recursion (exponential, for tiny grids). */
function playOut(profile: ModelProfile, config: SearchConfig, grid: number[]): number {
  const n = grid.length - 1;
  const size = (t: number) => grid[t] ?? 0;
  const q = (t: number) => size(t) - config.reserve;
  const cache = profile.promptCache !== false;
  const checks = (profile.refusal ?? "guardrail") === "guardrail";
  const working = (top: number, lo: number, hi: number, sent: number): number => {
    if (hi - lo === 1) {
      if (lo < 0 || lo === top) return 0;
      return okLoadMs(profile, size(lo)) + needleMs(profile, size(lo), q(lo), true);
    }
    let best = Infinity;
    for (let t = lo + 1; t < hi; t++) {
      const from = cache ? Math.min(sent, q(t)) : 0;
      const next = Math.max(sent, q(t));
      const yes = needleMs(profile, size(t), q(t), true, from) + working(top, t, hi, next);
      const no = needleMs(profile, size(t), q(t), false, from) + working(top, lo, t, next);
      best = Math.min(best, Math.max(yes, no));
    }
    return best;
  };
  const loadable = (lo: number, hi: number, real: boolean): number => {
    if (hi - lo === 1) {
      if (lo < 0) return 0;
      return (real ? 0 : okLoadMs(profile, size(lo))) + working(lo, -1, lo + 1, 0);
    }
    let best = Infinity;
    for (let t = lo + 1; t < hi; t++) {
      const no = failedLoadMs(profile, size(t)) + loadable(lo, t, real);
      const load = Math.max(okLoadMs(profile, size(t)) + loadable(t, hi, true), no);
      best = Math.min(best, load);
      if (checks) best = Math.min(best, Math.max(CHECK_STARTED_MS + loadable(t, hi, false), no));
    }
    return best;
  };
  return loadable(-1, n + 1, false);
}

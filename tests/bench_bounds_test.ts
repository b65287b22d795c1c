/**
 * The bench's bounds against the emulator: the oracle lower bound's steps, replayed through the
 * real probe and SDK on the emulator, turn out as they say and cost what the bound prices (plus
 * only the tokens the emulator's answers have beyond the shortest one); the best average is
 * the value of its two games (played out over every decision tree on a tiny grid), no search
 * that plays the whole game in any order averages below it, and on the fleet it lies between
 * the oracle's average and a plain bisection's; and the reference's priced cost is what the
 * emulator charges it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connectLmStudio } from "../src/lmstudio/client.ts";
import type { SearchConfig } from "../src/search/context_search.ts";
import { benchConfig, REGIMES, virtualProbe } from "../scripts/bench/regimes.ts";
import {
  ANSWER_TOKENS,
  lowerBoundMs,
  type LowerBoundStep,
  lowerBoundSteps,
  needleMs,
  okLoadMs,
  profileLimits,
} from "../scripts/bench/lower_bound.ts";
import {
  averageLowerBoundMs,
  bestAverage,
  CHECK_STARTED_MS,
  priorGrid,
  priorProfile,
  referenceMs,
} from "../scripts/bench/best_average.ts";
import { referenceSearch } from "../scripts/bench/reference_search.ts";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import { generateMs, prefillMs, refusalMs, TIMING } from "../scripts/emulator/timing.ts";
import { loadFleet, testProfile, withEmulator } from "./support/emulator.ts";

const sdkTest = { sanitizeOps: false, sanitizeResources: false };

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
    for (const { key: regime, apply } of REGIMES) {
      const profiles = fleet.map(apply);
      await withEmulator(profiles, async (emulator) => {
        for (const profile of profiles) {
          const config = benchConfig(profile);
          const steps = lowerBoundSteps(profileLimits(profile, config), config);
          const label = `${regime}: ${profile.modelKey}`;
          emulator.reset();
          const lms = await connectLmStudio(emulator.url);
          try {
            const probe = virtualProbe(lms, emulator, profile.modelKey, "lb");
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

/** A 7B model with a small grid, for the games played out in full. */
function tinyProfile(extra: Partial<ModelProfile>): ModelProfile {
  return testProfile("tiny", { declaredContext: 8192, ...extra });
}

/** The tiny profiles: guardrails and a cache (checks work), engine failures without a cache. */
const TINY: ModelProfile[] = [
  tinyProfile({}),
  tinyProfile({ refusal: "engine", promptCache: false }),
  tinyProfile({ refusal: "exit-code", needleFailMode: "empty" }),
];

/** Prices of one tiny grid, straight from the emulator's cost model. */
function tinyPrices(profile: ModelProfile, config: SearchConfig, grid: number[]) {
  const size = (t: number) => grid[t] ?? 0;
  const q = (t: number) => t < 0 ? 0 : size(t) - config.reserve;
  const cache = profile.promptCache !== false;
  return {
    n: grid.length - 1,
    checks: (profile.refusal ?? "guardrail") === "guardrail",
    okLoad: (t: number) => okLoadMs(profile, size(t)),
    refused: (t: number) => refusalMs(profile, size(t)),
    /** A needle of index t with the longest prompt sent of index `sent` (-1: none), or cold. */
    needle: (t: number, pass: boolean, sent: number) =>
      needleMs(profile, size(t), q(t), pass, cache ? Math.min(q(sent), q(t)) : 0),
  };
}

/** Expected value of the best action, given each action's outcomes as (probability, cost). */
function bestOf(actions: Array<Array<[number, () => number]>>): number {
  let best = Infinity;
  for (const outcomes of actions) {
    let value = 0;
    for (const [p, cost] of outcomes) if (p > 0) value += p * cost();
    best = Math.min(best, value);
  }
  return best;
}

/**
 * The two games of `best_average.ts` by plain recursion over every decision tree: any load or
 * check that changes what is known, any needle or test made as a confirming load, the longest
 * prompt sent and every confirmed size tracked as they are, not summarised.
 */
function playGames(profile: ModelProfile, config: SearchConfig) {
  const grid = priorGrid(config);
  const { n, checks, okLoad, refused, needle } = tinyPrices(profile, config, grid);
  // Load game: L in [a, hi - 1] with weights; real: a real load succeeded at a.
  const loads = (weight: (i: number) => number) => {
    const memo = new Map<string, number>();
    const play = (a: number, hi: number, real: boolean): number => {
      const key = `${a},${hi},${real}`;
      const known = memo.get(key);
      if (known !== undefined) return known;
      let value: number;
      if (a === hi - 1 && real) value = 0;
      else {
        let total = 0;
        for (let i = a; i < hi; i++) total += weight(i);
        const up = (t: number) => {
          let m = 0;
          for (let i = Math.max(a, t); i < hi; i++) m += weight(i);
          return m / total;
        };
        const actions: Array<Array<[number, () => number]>> = [];
        for (let t = 0; t <= n; t++) {
          const p = up(t);
          const stay = () => refused(t) + play(a, Math.min(hi, t), real);
          // A real load anywhere it tells something or makes a real load at a.
          if ((p > 0 && p < 1) || (t === a && !real)) {
            actions.push([
              [p, () => okLoad(t) + play(Math.max(a, t), hi, t === a ? true : t > a || real)],
              [1 - p, stay],
            ]);
          }
          if (checks && p > 0 && p < 1) {
            actions.push([[p, () => CHECK_STARTED_MS + play(t, hi, false)], [1 - p, stay]]);
          }
        }
        value = bestOf(actions);
      }
      memo.set(key, value);
      return value;
    };
    return play;
  };
  // Needle game on the instance at j: W in [max(lo, 0), hi - 1] (lo: largest pass, hi: smallest
  // failure), `sent` the longest prompt sent, `conf` a bit per confirmed size.
  const work = (j: number) => {
    const memo = new Map<string, number>();
    const play = (lo: number, hi: number, sent: number, conf: number): number => {
      const key = `${lo},${hi},${sent},${conf}`;
      const known = memo.get(key);
      if (known !== undefined) return known;
      const a = Math.max(lo, 0);
      let value: number;
      const k = hi - 1;
      if (a === k && (k === j ? lo === j : hi <= j && (conf >> k & 1) === 1)) value = 0;
      else {
        const m = hi - a;
        const actions: Array<Array<[number, () => number]>> = [];
        for (let t = 0; t <= j; t++) {
          const up = Math.min(1, Math.max(0, (hi - Math.max(t, a)) / m));
          const wider = Math.max(sent, t);
          const [nlo, nhi] = [Math.max(lo, t), Math.min(hi, t)];
          if ((up > 0 && up < 1) || t > sent) {
            actions.push([
              [up, () => needle(t, true, sent) + play(nlo, hi, wider, conf)],
              [1 - up, () => needle(t, false, sent) + play(lo, nhi, wider, conf)],
            ]);
          }
          const confirms = conf | 1 << t;
          if (t < j && ((up > 0 && up < 1) || (up === 1 && confirms !== conf))) {
            actions.push([
              [up, () => okLoad(t) + needle(t, true, -1) + play(nlo, hi, wider, confirms)],
              [1 - up, () => needle(t, false, -1) + play(lo, nhi, wider, conf)],
            ]);
          }
        }
        value = bestOf(actions);
      }
      memo.set(key, value);
      return value;
    };
    return play(-1, j + 1, -1, 0);
  };
  let workMs = 0;
  for (let j = 0; j <= n; j++) workMs += work(j) / (n + 1);
  const revealed = loads((i) => 1 / (i + 1));
  let loadMs = 0;
  for (let k = 0; k <= n; k++) {
    let pW = 0;
    for (let i = k; i <= n; i++) pW += 1 / (n + 1) / (i + 1);
    loadMs += pW * revealed(k, n + 1, false);
  }
  return { ms: loadMs + workMs, phasedMs: loads(() => 1)(0, n + 1, false) + workMs };
}

/**
 * The whole game as a search plays it, on a tiny grid, by plain recursion: loads (a load unloads
 * the instance), checks where they work, needles on the loaded instance (its own cache: the
 * longest prompt sent on it), fresh full-length needles (a pass confirms the instance's size),
 * in any order, until the limits are proven. Its value is what the best search averages.
 */
function playWhole(profile: ModelProfile, config: SearchConfig): number {
  const grid = priorGrid(config);
  const { n, checks, okLoad, refused, needle } = tinyPrices(profile, config, grid);
  const truths: Array<{ l: number; w: number; p: number }> = [];
  for (let l = 0; l <= n; l++) {
    for (let w = 0; w <= l; w++) truths.push({ l, w, p: 1 / (n + 1) / (l + 1) });
  }
  const memo = new Map<string, number>();
  // llo/lhi: largest L success, smallest refusal; wlo/whi: largest pass, smallest failure; inst:
  // the loaded size (-1: none); sent: its longest prompt; loaded, conf: bits per size; budget:
  // loads left (every size twice: more is never worth it).
  const play = (s: number[]): number => {
    const key = s.join(",");
    const known = memo.get(key);
    if (known !== undefined) return known;
    const [llo, lhi, wlo, whi, inst, sent, loaded, conf, budget] = s as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const live = truths.filter(({ l, w }) => l >= llo && l < lhi && w >= wlo && w < whi && w <= l);
    const total = live.reduce((sum, t) => sum + t.p, 0);
    const share = (test: (t: { l: number; w: number }) => boolean) =>
      live.filter(test).reduce((sum, t) => sum + t.p, 0) / total;
    const only = live.length === 1 ? live[0]! : undefined;
    const proven = only !== undefined && (loaded >> only.l & 1) === 1 &&
      (only.l === n || lhi === only.l + 1) &&
      (only.w === only.l ? wlo === only.l : whi === only.w + 1 && (conf >> only.w & 1) === 1);
    let value = 0;
    if (!proven) {
      const actions: Array<Array<[number, () => number]>> = [];
      for (let t = 0; t <= n; t++) {
        const up = share(({ l }) => l >= t);
        const refusal = () =>
          refused(t) + play([llo, Math.min(lhi, t), wlo, whi, -1, -1, loaded, conf, budget - 1]);
        if (budget > 0 && !(inst === t && sent === -1)) {
          const next = [Math.max(llo, t), lhi, wlo, whi, t, -1, loaded | 1 << t, conf, budget - 1];
          actions.push([[up, () => okLoad(t) + play(next)], [1 - up, refusal]]);
        }
        if (checks && up > 0 && up < 1) {
          const next = [t, lhi, wlo, whi, inst, sent, loaded, conf, budget];
          const no = [llo, t, wlo, whi, inst, sent, loaded, conf, budget];
          actions.push([
            [up, () => CHECK_STARTED_MS + play(next)],
            [1 - up, () => refused(t) + play(no)],
          ]);
        }
      }
      for (let t = 0; t <= inst; t++) {
        const up = share(({ w }) => w >= t);
        const wider = Math.max(sent, t);
        const yes = [llo, lhi, Math.max(wlo, t), whi, inst, wider, loaded];
        const no = [llo, lhi, wlo, Math.min(whi, t), inst, wider, loaded];
        if ((up > 0 && up < 1) || t > sent) {
          actions.push([
            [up, () => needle(t, true, sent) + play([...yes, conf, budget])],
            [1 - up, () => needle(t, false, sent) + play([...no, conf, budget])],
          ]);
        }
        if (t === inst && ((up > 0 && up < 1) || (up === 1 && (conf >> t & 1) === 0))) {
          actions.push([
            [up, () => needle(t, true, -1) + play([...yes, conf | 1 << t, budget])],
            [1 - up, () => needle(t, false, -1) + play([...no, conf, budget])],
          ]);
        }
      }
      value = bestOf(actions);
    }
    memo.set(key, value);
    return value;
  };
  return play([-1, n + 1, -1, n + 1, -1, -1, 0, 0, 2 * (n + 1)]);
}

Deno.test("the best average is the value of its two games, played out over every tree", () => {
  const config: SearchConfig = { declared: 8192, minContext: 2048, precision: 1536, reserve: 64 };
  assert.deepEqual(priorGrid(config), [2048, 3584, 5120, 6656, 8192]);
  for (const profile of TINY) {
    const best = bestAverage(profile, config);
    const played = playGames(profile, config);
    const label = `${JSON.stringify(best)} vs ${JSON.stringify(played)}`;
    assert.ok(Math.abs(best.ms - played.ms) < 1e-6, label);
    assert.ok(Math.abs(best.phasedMs - played.phasedMs) < 1e-6, label);
    assert.ok(Math.abs(best.loadMs + best.workMs - best.ms) < 1e-6, label);
  }
});

Deno.test("no search that interleaves loads, checks and needles averages below the best", () => {
  const config: SearchConfig = { declared: 8192, minContext: 2048, precision: 2048, reserve: 64 };
  assert.deepEqual(priorGrid(config), [2048, 4096, 6144, 8192]);
  for (const profile of TINY) {
    const best = bestAverage(profile, config).ms;
    const whole = playWhole(profile, config);
    // A bound, and a close one: the relaxations give away little on this grid.
    assert.ok(best <= whole + 1e-6 && best > 0.9 * whole, `${best} vs ${whole}`);
  }
});

/**
 * A plain bisection's average under the games' cost model: loads at the midpoint of what is
 * known, a real load at the answer, needles at the midpoint on that instance (with the cache,
 * each pays its tokens beyond the longest prompt sent), then a confirming load and a fresh needle
 * below the loadable size.
 */
function bisectionMs(profile: ModelProfile, config: SearchConfig): number {
  const grid = priorGrid(config);
  const { n, okLoad, refused, needle } = tinyPrices(priorProfile(profile), config, grid);
  let average = 0;
  for (let l = 0; l <= n; l++) {
    for (let w = 0; w <= l; w++) {
      let cost = 0;
      let [lo, hi, real] = [0, n + 1, false];
      while (hi - lo > 1) {
        const t = Math.floor((lo + hi) / 2);
        if (t <= l) {
          cost += okLoad(t);
          [lo, real] = [t, true];
        } else {
          cost += refused(t);
          hi = t;
        }
      }
      if (!real) cost += okLoad(lo);
      let [wlo, whi, sent] = [-1, l + 1, -1];
      while (whi - Math.max(wlo, 0) > 1 || (whi === l + 1 && wlo < l)) {
        const t = Math.floor((wlo + whi) / 2);
        cost += needle(t, t <= w, sent);
        sent = Math.max(sent, t);
        if (t <= w) wlo = t;
        else whi = t;
      }
      if (w < l) cost += okLoad(w) + needle(w, true, -1);
      average += cost / (n + 1) / (l + 1);
    }
  }
  return average;
}

Deno.test("on the fleet the best average lies between the oracle's and a bisection's", async () => {
  const fleet = (await loadFleet()).filter((p) => p.type === "llm");
  for (const { key: regime, apply } of REGIMES) {
    for (const profile of fleet.map(apply)) {
      const config = benchConfig(profile);
      const best = bestAverage(profile, config);
      const lb = averageLowerBoundMs(profile, config);
      const bisection = bisectionMs(profile, config);
      const label = `${regime}: ${profile.modelKey} ${lb} <= ${best.ms} <= ${best.phasedMs} ` +
        `<= ${bisection}`;
      assert.ok(lb <= best.ms + 1e-6, label);
      assert.ok(best.ms <= best.phasedMs + 1e-6, label);
      // The search's choices are worth something on average: strictly below bisection.
      assert.ok(best.phasedMs < bisection, label);
    }
  }
});

Deno.test("the reference's priced average is what the emulator charges it", sdkTest, async () => {
  const fleet = (await loadFleet()).filter((p) => p.type === "llm");
  const picks = ["qwen2.5-7b-instruct", "llama-3.3-70b-instruct", "gemma-3-12b-it"];
  for (const { key: regime, apply } of REGIMES) {
    if (regime === "c") continue;
    // A model as the prior sees it: only a loadable size, here a third of the way up the grid.
    const profiles = fleet.filter((p) => picks.includes(p.modelKey)).map((p) => {
      const plain = priorProfile(apply(p));
      const grid = priorGrid(benchConfig(plain));
      return { ...plain, loadFailAbove: grid[Math.floor(grid.length / 3)]! };
    });
    await withEmulator(profiles, async (emulator) => {
      for (const profile of profiles) {
        emulator.reset();
        const lms = await connectLmStudio(emulator.url);
        try {
          const probe = virtualProbe(lms, emulator, profile.modelKey, "ref");
          const config = benchConfig(profile);
          await referenceSearch(config, probe);
          await probe.unload();
          const stats = emulator.stats();
          const priced = referenceMs(profile, config, profile.loadFailAbove);
          const rounding = stats.loads.length + stats.predictions.length + stats.unloads;
          const label = `${regime}: ${profile.modelKey} ${stats.virtualMs} vs ${priced}`;
          assert.ok(Math.abs(stats.virtualMs - priced) <= rounding, label);
        } finally {
          await lms.close();
        }
      }
    });
  }
});

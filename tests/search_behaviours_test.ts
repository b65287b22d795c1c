/**
 * The pure search against fake models of each real LM Studio behaviour: a model that loads
 * nowhere, a refusal in words nobody listed, auto-fit raising a request, an engine that crashes
 * above a prompt length (or everywhere), refusals that cost a fraction of a second or a whole
 * load, a server with and without a prompt cache, and a state saved before costs were measured.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  initialState,
  type SearchConfig,
  searchContextLimits,
  type SearchState,
} from "../src/search/context_search.ts";
import { MAX_REQUESTS } from "../src/search/load_size.ts";
import { type FakeModel, FakeProbe, seededRandom, truthOf } from "./support/fake_probe.ts";

const CONFIG: SearchConfig = { declared: 131072, minContext: 2048, precision: 1311, reserve: 64 };

/** Runs the search on `model` and checks both numbers against the oracle. */
async function searched(model: FakeModel, config = CONFIG) {
  const probe = new FakeProbe(model, config.reserve);
  const result = await searchContextLimits(config, probe);
  const truth = truthOf(model, config);
  assert.equal(result.loadable === null, truth.loadable === null, "loadable null or not");
  if (truth.loadable !== null) {
    assert.ok(result.loadable! <= truth.loadable, `loadable ${result.loadable} > truth`);
    assert.ok(result.loadable! >= truth.loadable - config.precision, `loadable too low`);
  }
  assert.equal(result.working === null, truth.working === null, "working null or not");
  if (truth.working !== null) {
    assert.ok(result.working! <= truth.working, `working ${result.working} > ${truth.working}`);
    assert.ok(result.working! >= truth.workingFloor!, `working ${result.working} too low`);
  }
  return { probe, result };
}

const EXIT_133 = "(Exit code: 133). Please check settings and try loading the model again.";

Deno.test("a model that loads nowhere is failed in two loads with LM Studio's reason", async () => {
  const text =
    "Failed to load model: failed to load model No LM Runtime found for model format gguf!";
  const { probe, result } = await searched({ loadsNowhere: text });
  assert.equal(probe.loads, 2);
  assert.deepEqual(probe.calls.filter((c) => c.method === "load").map((c) => c.context), [
    131072,
    2048,
  ]);
  assert.equal(result.lastRefusal, text);
});

Deno.test("a refusal in any words counts as not loading at that size", async () => {
  const { result } = await searched({ loadFailAbove: 40960, refusalText: EXIT_133 });
  assert.ok(result.attempts.some((a) => a.outcome === "refused" && a.excerpt === EXIT_133));
});

Deno.test("auto-fit raising a small request counts as loaded at the asked size", async (t) => {
  const model: FakeModel = { fitUpTo: 32768, needleFailAbove: 12159 };
  const { result } = await searched(model);
  await t.step("the confirming reload below the raised size is a load, not a failure", () => {
    const raised = result.attempts.filter((a) =>
      a.action === "load" && a.actual !== undefined && a.actual > a.context
    );
    assert.ok(raised.length > 0, "a load was raised");
    for (const attempt of raised) {
      assert.equal(attempt.outcome, "loaded");
      assert.equal(attempt.actual, 32768, "the log keeps the reported size beside the asked one");
    }
    assert.ok(raised.some((a) => a.phase === "confirm"), "the confirmation was raised too");
  });
  await t.step("nothing is fitted and the model is not failed", () => {
    assert.ok(result.attempts.every((a) => a.outcome !== "fitted"));
    assert.notEqual(result.working, null);
  });
});

Deno.test("a prediction that crashes the engine is a failed probe at that length", async (t) => {
  await t.step("above a prompt length: the search reloads and finds the limit", async () => {
    const { probe, result } = await searched({ crashAbove: 28000 });
    const crashes = result.attempts.filter((a) => a.excerpt?.includes("has crashed"));
    assert.ok(crashes.length > 0, "the crash is in the trace");
    for (const crash of crashes) assert.equal(crash.outcome, "fail");
    assert.ok(crashes.every((c) => c.context > 0), "the crash is logged on its instance");
    assert.equal(result.costs.crashes, crashes.length);
    // After each crash the next probe loads again first: nothing is asked of a dead instance.
    for (let i = 0; i + 1 < probe.calls.length; i++) {
      const call = probe.calls[i]!;
      if (call.method === "needle" && call.promptTokens! > 28000) {
        assert.ok(["load", "unload"].includes(probe.calls[i + 1]!.method));
      }
    }
  });
  await t.step("at every size: loadable found, working null", async () => {
    const { result } = await searched({ crashAbove: 100 });
    assert.notEqual(result.loadable, null);
    assert.equal(result.working, null);
  });
});

Deno.test("the plan follows the measured cost of refusals", async (t) => {
  const shape: FakeModel = { loadFailAbove: 59392 };
  const cheap = await searched({ ...shape, loadSeconds: 6.5, refusalSeconds: 0.3 });
  const dear = await searched({ ...shape, loadSeconds: 6.5, refusalSeconds: 7 });
  const successes = (r: typeof cheap) =>
    r.result.attempts.filter((a) => a.action === "load" && a.outcome === "loaded").length;
  await t.step("cheap refusals: lean on them, and fewer loads succeed", () => {
    assert.equal(cheap.result.plan.refusals, "lean");
    assert.equal(dear.result.plan.refusals, "bisect");
    assert.ok(successes(cheap) < successes(dear), `${successes(cheap)} vs ${successes(dear)}`);
  });
  await t.step("the decision and what it rests on are in the trace", () => {
    const cheapDecision = cheap.result.attempts.find((a) => a.decision)?.decision ?? "";
    assert.match(cheapDecision, /loads 6\.5 s, refusals 0\.3 s.*lean on refusals/);
    const dearDecision = dear.result.attempts.find((a) => a.decision)?.decision ?? "";
    assert.match(dearDecision, /loads 6\.5 s, refusals 7\.0 s.*plain load bisection/);
  });
  await t.step("the measurements are returned for the record", () => {
    const count = (outcome: string) =>
      cheap.result.attempts.filter((a) => a.action === "load" && a.outcome === outcome).length;
    assert.equal(cheap.result.costs.refusals, count("refused"));
    assert.equal(cheap.result.costs.loads, count("loaded"));
    assert.ok(Math.abs(cheap.result.costs.refusalSeconds - 0.3 * count("refused")) < 1e-9);
  });
  await t.step("a clock too coarse to tell keeps the plan plain and repeatable", async () => {
    const quick = await searched({ ...shape, loadSeconds: 0.004, refusalSeconds: 0.001 });
    assert.equal(quick.result.plan.refusals, "bisect");
  });
});

Deno.test("without a prompt cache the scan jumps, and prefills less than climbing would", async (t) => {
  const shape: FakeModel = { needleFailAbove: 23000, prefillSecondsPerToken: 0.0002 };
  const cached = await searched({ ...shape, promptCache: true });
  const uncached = await searched({ ...shape, promptCache: false });
  await t.step("the cache is measured from the prefill times", () => {
    assert.equal(cached.result.costs.promptCache, true);
    assert.equal(uncached.result.costs.promptCache, false);
    assert.equal(cached.result.plan.prompts, "climb");
    assert.equal(uncached.result.plan.prompts, "jump");
    assert.ok(uncached.result.attempts.some((a) => /no prompt cache/.test(a.decision ?? "")));
  });
  await t.step("jumping prefills less than the climb would have without a cache", () => {
    // The climb's prompts, had each been prefilled whole, against what the jump prefilled.
    assert.ok(
      uncached.probe.prefilled < cached.result.promptTokens,
      `${uncached.probe.prefilled} vs ${cached.result.promptTokens}`,
    );
  });
  await t.step("with a cache the climb prefills about each position once", () => {
    assert.ok(cached.probe.prefilled < 2 * 23000 + 4 * CONFIG.precision);
  });
});

Deno.test("without a cache, a model at its memory limit is probed at full length first", async () => {
  const model: FakeModel = {
    loadFailAbove: 59392,
    promptCache: false,
    prefillSecondsPerToken: 0.0002,
  };
  const { probe, result } = await searched(model);
  const needles = result.attempts.filter((a) => a.action === "needle");
  // The cache test's two short prompts, then the full length of the instance: done.
  assert.equal(needles.length, 3, needles.map((n) => n.promptTokens).join(", "));
  assert.equal(needles.at(-1)!.promptTokens, result.loadable! - CONFIG.reserve);
  assert.equal(result.working, result.loadable);
  const short = needles.slice(0, 2).reduce((sum, n) => sum + n.promptTokens!, 0);
  assert.equal(probe.prefilled, short + result.loadable! - CONFIG.reserve);
});

Deno.test("a state saved before costs were measured resumes, made whole once", async () => {
  const model: FakeModel = { loadFailAbove: 59392, needleFailAbove: 30000 };
  let saved: SearchState | undefined;
  let seen = 0;
  await searchContextLimits(CONFIG, new FakeProbe(model), {
    hooks: {
      afterAttempt: (_attempt, state) => {
        if (++seen === 4) saved = state;
      },
    },
  });
  assert.ok(saved !== undefined);
  const old = structuredClone(saved) as Partial<SearchState>;
  delete old.costs;
  delete old.plan;
  delete old.lastRefusal;
  delete old.hintBelow;
  delete old.loadableLoads;
  const resumed = await searchContextLimits(CONFIG, new FakeProbe(model), {
    state: old as SearchState,
  });
  const truth = truthOf(model, CONFIG);
  assert.ok(resumed.working !== null && resumed.working <= truth.working!);
  assert.ok(resumed.working >= truth.workingFloor!);
  assert.equal(typeof resumed.state.costs?.loads, "number");
  assert.ok(resumed.state.plan !== undefined);
});

Deno.test("where LM Studio refuses before loading, checks find the loadable size", async (t) => {
  const shape: FakeModel = { loadFailAbove: 59392, loadSeconds: 6.5, refusalSeconds: 0.3 };
  const checked = await searched({ ...shape, refusalEarly: true, checks: true, checkSeconds: 0.8 });
  const loaded = await searched({ ...shape, refusalEarly: true });
  const loadsOf = (r: typeof checked, phase: string) =>
    r.result.attempts.filter((a) => a.action === "load" && a.phase === phase);
  await t.step("one refused load at the cap, checks, then one load that proves it", () => {
    const loads = loadsOf(checked, "loadable");
    assert.deepEqual(loads.map((a) => a.outcome), ["refused", "loaded"]);
    assert.equal(loads[1]!.context, checked.result.loadable);
    assert.ok(checked.result.checks >= 5, `${checked.result.checks} checks`);
    const checks = checked.probe.calls.filter((c) => c.method === "check");
    assert.equal(checks[0]!.context, CONFIG.minContext, "the floor is checked first");
  });
  await t.step("fewer loads succeed than without checks", () => {
    const successes = (r: typeof checked) =>
      loadsOf(r, "loadable").filter((a) => a.outcome === "loaded").length;
    assert.ok(successes(checked) < successes(loaded), `${successes(loaded)} without checks`);
  });
  await t.step("the decision is in the trace and the plan", () => {
    assert.equal(checked.result.plan.checks, true);
    const decision = checked.result.attempts.find((a) => a.decision)?.decision ?? "";
    assert.match(decision, /bisect with checks/);
    assert.equal(loaded.result.plan.checks, false, "no checks where the probe has none");
  });
});

Deno.test("refusals after the load started (engine failures): no checks", async () => {
  const { probe, result } = await searched({
    loadFailAbove: 59392,
    refusalEarly: false,
    checks: true,
  });
  assert.equal(probe.checks, 0);
  assert.equal(result.plan.checks, false);
});

Deno.test("a load failing where a check started ends the checks: loads decide", async () => {
  // The guardrail lets 90k start, the engine fails above 40k: checks alone would say 90k.
  const model: FakeModel = { loadFailAbove: 40000, guardrailAbove: 90000, checks: true };
  const { probe, result } = await searched(model);
  const lastCheck = probe.calls.findLastIndex((c) => c.method === "check");
  assert.ok(lastCheck > 0, "checks were used first");
  const after = probe.calls.slice(lastCheck + 1).filter((c) => c.method === "load");
  assert.ok(after.length >= 3, "then loads bisected below the failed load");
  assert.equal(result.plan.checks, false);
  assert.ok(
    result.attempts.some((a) => /plain load bisection|lean on refusals/.test(a.decision ?? "")),
  );
});

Deno.test("a model that loads nowhere is failed by one load and one check", async () => {
  const text = "failed to load model No LM Runtime found for model format gguf!";
  const { probe, result } = await searched({ loadsNowhere: text, checks: true });
  assert.deepEqual(probe.calls.filter((c) => c.method !== "unload").map((c) => c.method), [
    "load",
    "check",
  ]);
  assert.equal(result.lastRefusal, text);
});

Deno.test("checks that cost about a load (the cancel ignored) stop after the first", async () => {
  const { probe, result } = await searched({
    loadFailAbove: 59392,
    refusalEarly: true,
    checks: true,
    loadSeconds: 6.5,
    refusalSeconds: 0.3,
    checkSeconds: 6.5,
  });
  assert.equal(probe.checks, 1, "the floor check, then loads");
  assert.equal(result.plan.checks, false);
  assert.equal(result.costs.checks, 1);
  assert.ok(Math.abs((result.costs.checkSeconds ?? 0) - 6.5) < 1e-9);
  assert.ok(result.attempts.some((a) => /lean on refusals/.test(a.decision ?? "")));
});

Deno.test("checks that LM Studio loads all the same stop after the second", async () => {
  const { probe, result } = await searched({
    loadFailAbove: 59392,
    refusalEarly: true,
    checks: true,
    checksComplete: true,
  });
  const started = probe.calls.filter((c) => c.method === "check").length -
    result.attempts.filter((a) => a.action === "check" && a.outcome === "refused").length;
  assert.equal(started, 2);
  assert.equal(result.costs.checksCompleted, 2);
  assert.equal(result.plan.checks, false);
  // Without timed costs the planner falls back on its prior: it leans on refusals.
  assert.ok(result.attempts.some((a) => /lean on refusals/.test(a.decision ?? "")));
});

Deno.test("checks stay in the plan where loads are too quick for the clock to tell", async () => {
  const quick = await searched({
    loadFailAbove: 59392,
    refusalEarly: true,
    checks: true,
    loadSeconds: 0.004,
    refusalSeconds: 0.001,
    checkSeconds: 0.002,
  });
  assert.equal(quick.result.plan.checks, true);
  const dear = await searched({
    loadFailAbove: 59392,
    refusalEarly: true,
    checks: true,
    loadSeconds: 3,
    refusalSeconds: 0.3,
    checkSeconds: 2,
  });
  assert.equal(dear.result.plan.checks, false, "a check near a load's price is not worth it");
});

Deno.test("a size that loaded once and fails every time after is searched again below it, once", async (t) => {
  // The engine's memory shrinks after the first load: 44,000 loaded, then nothing above 20,000.
  const model: FakeModel = {
    loadFailAbove: 60000,
    refusalEarly: false,
    needleFailAbove: 30000,
    shrinks: { after: 1, loadFailAbove: 20000 },
  };
  const probe = new FakeProbe({ ...model, throwOnCall: 500 }, CONFIG.reserve);
  const result = await searchContextLimits(CONFIG, probe);
  const loads = probe.calls.filter((c) => c.method === "load").map((c) => c.context);
  await t.step("the lost size is loaded once more, not again and again", () => {
    assert.ok(loads[2]! > 20000 && probe.calls[3]?.method === "sanity", loads.join(" "));
    const repeats = loads.filter((c) => c === loads[2]).length;
    assert.equal(repeats, 2, loads.join(" "));
    assert.ok(probe.loads <= 25, `${probe.loads} loads`);
  });
  await t.step("the loadable size is what loads now, and works there", () => {
    assert.equal(result.failure, null);
    assert.ok(result.loadable! <= 20000 && result.loadable! > 20000 - CONFIG.precision);
    assert.equal(result.working, result.loadable);
  });
});

Deno.test("loads that stop being repeatable twice fail the model, saying so", async () => {
  // Each load that works lowers what the engine holds below it: nothing learnt by loading holds.
  const probe = new FakeProbe({ brokenAbove: 40000 }, CONFIG.reserve);
  let limit = Infinity;
  let loads = 0;
  const load = probe.load.bind(probe);
  probe.load = async (context) => {
    loads++;
    if (context > limit) {
      probe.loaded = null;
      return { kind: "refused", message: "Failed to load model", early: false };
    }
    const outcome = await load(context);
    if (outcome.kind === "loaded") limit = context - 1;
    return outcome;
  };
  const result = await searchContextLimits(CONFIG, probe);
  assert.ok(loads <= 20, `${loads} loads`);
  assert.equal(result.loadable, null);
  assert.equal(result.working, null);
  assert.match(result.failure ?? "", /loads stopped being repeatable: \d+ tokens failed to load/);
});

Deno.test("no answers of the server keep a search going past its request ceiling", async (t) => {
  // An adversary: each load succeeds or fails at random, each needle passes at random.
  for (let seed = 1; seed <= 60; seed++) {
    const random = seededRandom(seed);
    const probe = new FakeProbe({}, CONFIG.reserve);
    const load = probe.load.bind(probe);
    probe.load = async (context) => {
      const outcome = await load(context);
      if (random() < 0.5) return outcome;
      probe.loaded = null;
      return { kind: "refused", message: "Failed to load model", early: random() < 0.5 };
    };
    probe.needle = (promptTokens) => {
      if (probe.loaded === null || promptTokens + CONFIG.reserve > probe.loaded) {
        throw new Error("needle without a loaded instance large enough");
      }
      return Promise.resolve({ pass: random() < 0.5, excerpt: "?" });
    };
    const result = await searchContextLimits(CONFIG, probe);
    const requests = probe.calls.filter((c) => c.method !== "unload").length;
    assert.ok(requests <= MAX_REQUESTS, `seed ${seed}: ${requests} requests`);
    if (result.failure !== null) assert.equal(result.loadable, null);
  }
  await t.step("a state at the ceiling ends at once, saying why", async () => {
    const probe = new FakeProbe({}, CONFIG.reserve);
    const state = { ...initialState(CONFIG), requests: MAX_REQUESTS };
    const result = await searchContextLimits(CONFIG, probe, { state });
    assert.equal(probe.loads, 0);
    assert.equal(result.loadable, null);
    assert.match(result.failure ?? "", /Stopped after 1,000 requests to LM Studio/);
  });
});

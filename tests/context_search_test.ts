/**
 * Unit tests of the pure context search (src/search/), driven by the fake probe: limits within the
 * precision for every kind of model, the load budget, resume after a crash at any point, the
 * reference algorithm's blind spot and the lower bound.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Attempt,
  climbStep,
  fullProbeFirst,
  initialState,
  loadableAllowance,
  loadBudget,
  planLoads,
  type SearchConfig,
  searchContextLimits,
  type SearchResult,
  type SearchState,
  splitPoint,
} from "../src/search/context_search.ts";
import { referenceSearch } from "../scripts/bench/reference_search.ts";
import { lowerBound, type LowerBoundStep, lowerBoundSteps } from "../scripts/bench/lower_bound.ts";
import {
  FakeCrash,
  type FakeModel,
  FakeProbe,
  seededRandom,
  truthOf,
} from "./support/fake_probe.ts";

const RESERVE = 64;

function configFor(declared: number, extra: Partial<SearchConfig> = {}): SearchConfig {
  return {
    declared,
    minContext: 2048,
    precision: Math.max(256, Math.floor(declared / 100)),
    reserve: RESERVE,
    ...extra,
  };
}

/** Checks what must hold for every run; returns the result for further checks. */
function checkRun(
  model: FakeModel,
  config: SearchConfig,
  probe: FakeProbe,
  result: SearchResult,
  label: string,
): SearchResult {
  const truth = truthOf(model, config);
  const cap = Math.min(config.declared, config.maxContext ?? config.declared);
  const where = `${label}: ${JSON.stringify({ model, config, truth })} got ${
    JSON.stringify({ loadable: result.loadable, working: result.working })
  }`;
  assert.equal(probe.loaded, null, `nothing stays loaded (${where})`);
  assert.equal(probe.calls.at(-1)?.method, "unload", `the search unloads last (${where})`);
  assert.equal(result.state.phase, "done", where);
  assert.equal(result.loads, probe.loads, `loads are counted (${where})`);
  assert.equal(result.checks, probe.checks, `checks are counted (${where})`);
  for (const call of probe.calls.filter((c) => c.method === "load" || c.method === "check")) {
    assert.ok(call.context <= cap, `no load above the cap ${cap}: ${call.context} (${where})`);
    assert.ok(call.context >= config.minContext, `no load below minContext (${where})`);
  }
  if (truth.loadable === null) assert.equal(result.loadable, null, where);
  else {
    assert.ok(result.loadable !== null, where);
    assert.ok(result.loadable <= truth.loadable, `loadable not above the truth (${where})`);
    assert.ok(result.loadable >= truth.loadable - config.precision, `loadable precise (${where})`);
  }
  if (truth.working === null) assert.equal(result.working, null, where);
  else {
    assert.ok(result.working !== null, where);
    assert.ok(result.working <= truth.working, `working not above the truth (${where})`);
    assert.ok(result.working >= (truth.workingFloor ?? 0), `working precise (${where})`);
  }
  const loadableLoads = result.attempts.filter((a) => a.phase === "loadable" && a.action === "load")
    .map((a) => a.context);
  assert.equal(new Set(loadableLoads).size, loadableLoads.length, `no repeated load (${where})`);
  return result;
}

async function search(model: FakeModel, config: SearchConfig, label = "search") {
  const probe = new FakeProbe(model, config.reserve);
  const result = await searchContextLimits(config, probe);
  return { probe, result: checkRun(model, config, probe, result, label) };
}

function trace(attempts: Attempt[]): string[] {
  return attempts.map((a) =>
    `${a.phase} ${a.action} ${a.action === "needle" ? a.promptTokens : a.context} ${a.outcome}`
  );
}

Deno.test("the search finds the limits of each kind of model within the precision", async (t) => {
  const c128k = configFor(131072);
  const p = c128k.precision;

  await t.step(
    "an honest model costs one load and a climb that prefills each token once",
    async () => {
      const { result } = await search({}, c128k);
      const lines = trace(result.attempts);
      assert.deepEqual(lines.slice(0, 2), [
        "loadable load 131072 loaded",
        "loadable sanity 131072 pass",
      ]);
      assert.equal(lines.at(-1), "working needle 131008 pass", "it ends at the full length");
      const lengths = result.attempts.slice(2).map((a) => a.promptTokens ?? 0);
      assert.ok(
        lengths.every((n, i) => i === 0 || n > (lengths[i - 1] ?? 0)),
        "every probe climbs",
      );
      assert.ok(lengths.length < 40, `${lengths.length} probes`);
      assert.equal(result.loadable, 131072);
      assert.equal(result.working, 131072);
      assert.equal(result.loads, 1);
      assert.equal(result.prefillTokens, 131072 - RESERVE, "each probe extends the cached prompt");
    },
  );

  await t.step("a model refused above a cliff is bisected within the budget", async () => {
    const { result } = await search({ loadFailAbove: 50_000 }, c128k);
    assert.ok(result.loads <= loadBudget(c128k), `${result.loads} loads`);
    assert.equal(result.working, result.loadable);
  });

  await t.step("a fitted load says what fits: two loads in all", async () => {
    // Auto-fit gives what the machine holds: a request above it would be fitted again.
    const { result } = await search({ fitAbove: 40_960 }, c128k);
    assert.equal(result.loadable, 40_960);
    assert.equal(result.working, 40_960);
    assert.deepEqual(
      result.attempts.filter((a) => a.action === "load").map((a) => `${a.context} ${a.outcome}`),
      ["131072 fitted", "40960 loaded"],
    );
  });

  await t.step("a fit below the floor means nothing loads, without another load", async () => {
    const probe = new FakeProbe({ fitAbove: 60_000, fitTo: 1_000 }, c128k.reserve);
    const result = await searchContextLimits(c128k, probe);
    assert.equal(result.loadable, null);
    assert.equal(result.loads, 1);
  });

  await t.step("a model broken when loaded large is searched by load size", async () => {
    const { probe, result } = await search({ brokenAbove: 30_000 }, c128k);
    assert.equal(result.loadable, 131072);
    assert.ok(
      probe.calls.every((c) => c.method !== "needle" || c.context <= 30_000),
      "no needle is sent to an instance whose 2+2= failed",
    );
    const needleInstances = new Set(
      probe.calls.filter((c) => c.method === "needle").map((c) => c.context),
    );
    assert.equal(needleInstances.size, 1, "2+2= finds the healthy size, needles run once there");
    assert.ok(result.loads <= loadBudget(c128k));
  });

  await t.step("a needle cliff far below the loadable size costs two loads", async () => {
    const { result } = await search({ needleFailAbove: 8_000 }, c128k);
    assert.equal(result.loads, 2, "the top load and the confirming reload");
    const confirm = result.attempts.filter((a) => a.phase === "confirm");
    assert.deepEqual(confirm.map((a) => `${a.action} ${a.outcome} ${a.fresh ?? "-"}`), [
      "load loaded -",
      "needle pass true",
    ]);
    assert.equal(confirm[0]?.context, result.working);
    // The climb stops one step above the cliff; below it every probe reuses the cached prefix.
    const onTop = result.attempts.filter((a) => a.action === "needle" && a.context === 131072);
    const longest = Math.max(...onTop.map((a) => a.promptTokens ?? 0));
    assert.ok(longest <= 8_000 + climbStep(8_000, p), `climbed to ${longest}`);
    const confirmTokens = (result.working ?? 0) - RESERVE;
    assert.equal(result.prefillTokens, longest + confirmTokens, "nothing is prefilled twice");
  });

  await t.step("the candidate is asked again at another depth before the reload", async () => {
    const { result } = await search({ needleFailAbove: 8_000 }, c128k);
    const needles = result.attempts.filter((a) => a.action === "needle");
    const [pass, recheck] = needles.slice(-3, -1);
    assert.equal(pass?.promptTokens, recheck?.promptTokens);
    assert.notEqual(pass?.depth, recheck?.depth);
    assert.equal(recheck?.context, 131072, "on the loaded instance: only the question is new");
  });

  await t.step("a candidate failing at another depth is dropped without a reload", async () => {
    // Find the depth of the recheck, then make the model blind there just below the candidate.
    const plain = await search({ needleFailAbove: 8_000 }, c128k);
    const recheck = plain.result.attempts.filter((a) => a.action === "needle").at(-2);
    const candidate = recheck?.promptTokens ?? 0;
    const model = {
      needleFailAbove: 8_000,
      blindDepth: { depth: recheck?.depth ?? 0, above: candidate - 1 },
    };
    const { result } = await search(model, c128k, "blind depth");
    const failed = result.attempts.find((a) =>
      a.action === "needle" && a.promptTokens === candidate && a.outcome === "fail"
    );
    assert.ok(failed !== undefined, "the recheck fails");
    assert.equal(result.loads, 2, "no confirming load is spent on the dropped candidate");
    assert.ok(result.working !== null && result.working < candidate + RESERVE);
  });

  await t.step("a noisy band is reported between its floor and its hard limit", async () => {
    for (const [floor, hard] of [[20_000, 40_000], [60_000, 64_000], [10_000, 120_000]]) {
      const model = { noisy: { floor: floor ?? 0, hard: hard ?? 0 } };
      const { result } = await search(model, c128k, `noisy ${floor}-${hard}`);
      const last = result.attempts.at(-1);
      assert.equal(last?.action, "needle");
      assert.equal(last?.outcome, "pass");
      assert.ok(last.fresh === true || result.working === result.loadable);
    }
  });

  await t.step("a prompt pass that a load there contradicts backs off until it holds", async () => {
    const model = { needleFailAbove: 10_000, largeLoadBonus: { above: 60_000, extra: 30_000 } };
    const { result } = await search(model, c128k);
    assert.ok(result.attempts.some((a) => a.phase === "confirm" && a.outcome === "fail"));
    assert.ok(result.loads <= loadBudget(c128k), `the back-off doubles: ${result.loads} loads`);
  });

  await t.step(
    "a model that garbles every prompt when loaded large is searched by load",
    async () => {
      const { result } = await search({ garbledAbove: 30_000 }, c128k);
      assert.ok(result.loads <= loadBudget(c128k), `${result.loads} loads`);
    },
  );

  await t.step("a real needle cliff just above minContext is found by prompts", async () => {
    const { result } = await search({ needleFailAbove: 2_500 }, c128k);
    assert.ok(result.working !== null && result.working >= 2_048);
    assert.equal(result.loads, 2, "the top load and the confirming reload");
  });

  await t.step(
    "a model garbling every prompt when loaded large never reloads the top",
    async () => {
      const { probe } = await search({ garbledAbove: 30_000 }, c128k);
      const topLoads = probe.calls.filter((c) => c.method === "load" && c.context === 131072);
      assert.equal(topLoads.length, 1, "its prompts failed there, so its full length fails too");
    },
  );

  await t.step("a 1M-token model keeps the budget", async () => {
    const c1m = configFor(1_048_576);
    const honest = await search({}, c1m, "1M honest");
    assert.equal(honest.result.loads, 1);
    for (
      const model of [{ loadFailAbove: 300_000 }, { loadFailAbove: 700_000, brokenAbove: 9_000 }]
    ) {
      const { result } = await search(model, c1m, "1M");
      assert.ok(result.loads <= loadBudget(c1m), `${result.loads} > ${loadBudget(c1m)}`);
    }
  });

  await t.step("maxContext caps every load", async () => {
    const config = configFor(131072, { maxContext: 32_768 });
    const { result } = await search({}, config);
    assert.equal(result.loadable, 32_768);
    assert.equal(result.loads, 1);
    await search({ loadFailAbove: 20_000 }, config, "capped cliff");
  });

  await t.step("a model failing at minContext is reported as null", async () => {
    const none = await search({ loadFailAbove: 1_500 }, c128k, "no load");
    assert.equal(none.result.working, null);
    const mute = await search({ needleFailAbove: 1_000 }, c128k, "no answer");
    assert.equal(mute.result.loadable, 131072);
    const last = mute.result.attempts.filter((a) => a.action === "load").at(-1);
    assert.equal(last?.context, c128k.minContext, "null is proven by a load at minContext");
    const brokenSmall = await search({ brokenAbove: 1_000 }, c128k, "broken everywhere");
    assert.equal(brokenSmall.result.working, null);
  });

  await t.step("a cap below minContext tests nothing", async () => {
    const { result } = await search({}, configFor(1024));
    assert.equal(result.loads, 0);
    assert.equal(result.loadable, null);
  });
});

Deno.test("the search is precise and within budget for hundreds of random models", async () => {
  const random = seededRandom(20240607);
  const between = (lo: number, hi: number) => Math.floor(lo + random() * (hi - lo));
  const declaredChoices = [8192, 32768, 131072, 262144, 1_048_576];
  let worst = 0;
  for (let i = 0; i < 600; i++) {
    const declared = random() < 0.7
      ? declaredChoices[between(0, declaredChoices.length)] ?? 8192
      : between(4096, 1_100_000);
    const config = configFor(declared, {
      minContext: [1024, 2048, 4096][between(0, 3)] ?? 2048,
      ...(random() < 0.2 ? { maxContext: between(2048, declared) } : {}),
      ...(random() < 0.2 ? { precision: between(64, 4096) } : {}),
    });
    const model: FakeModel = {};
    if (random() < 0.7) model.loadFailAbove = between(1000, declared * 1.1);
    if (random() < 0.2) model.fitAbove = between(1000, declared);
    if (random() < 0.25) model.brokenAbove = between(1000, declared);
    if (random() < 0.4) model.needleFailAbove = between(500, declared);
    if (random() < 0.1) model.garbledAbove = between(1000, declared);
    // A third of the shelf refuses by its guardrail, before loading: the search checks there,
    // and some of those guardrails let through loads the engine then fails.
    if (random() < 0.35) {
      model.refusalEarly = true;
      model.checks = true;
      if (random() < 0.3 && model.loadFailAbove !== undefined) {
        model.guardrailAbove = between(model.loadFailAbove, declared * 1.1);
      }
    }
    const { result } = await search(model, config, `random #${i}`);
    const budget = loadBudget(config);
    // A model garbling every prompt at large loads needs a second bisection by loads: the budget
    // is promised for the others.
    if (model.garbledAbove === undefined) {
      assert.ok(result.loads <= budget, `random #${i}: ${result.loads} loads > ${budget}`);
      worst = Math.max(worst, result.loads / budget);
    }
    const bound = lowerBound(truthOf(model, config), config);
    const requests = result.loads + result.checks;
    assert.ok(requests >= bound.loads, `random #${i}: below the lower bound`);
  }
  assert.ok(worst > 0.5 && worst <= 1, `the cases reach the budget (worst ${worst})`);
});

/** Runs `model` with a crash at call k, then resumes; returns both parts. */
async function crashAndResume(
  model: FakeModel,
  config: SearchConfig,
  k: number,
  clearPending: boolean,
) {
  let saved: SearchState | undefined;
  const recorded: Attempt[] = [];
  const first = new FakeProbe({ ...model, throwOnCall: k }, config.reserve);
  const hooks = {
    beforeLoad: (_: number, state: SearchState) => {
      saved = state;
    },
    afterAttempt: (attempt: Attempt, state: SearchState) => {
      recorded.push(attempt);
      saved = state;
    },
  };
  let crash: unknown;
  await searchContextLimits(config, first, { hooks }).catch((e) => crash = e);
  assert.ok(crash instanceof FakeCrash, `call ${k} throws`);
  // Whatever the hook got must survive a trip through JSON, as the caller stores it that way.
  const state: SearchState = JSON.parse(JSON.stringify(saved ?? initialState(config)));
  if (clearPending) delete state.pendingLoad;
  const second = new FakeProbe(model, config.reserve);
  const result = await searchContextLimits(config, second, { state });
  return { crash, recorded, second, result };
}

Deno.test("an interrupted search resumes from its last saved state", async (t) => {
  const config = configFor(131072);
  const models: Record<string, FakeModel> = {
    honest: {},
    cliff: { loadFailAbove: 50_000 },
    fitted: { fitAbove: 40_960 },
    broken: { brokenAbove: 30_000 },
    "refused and broken": { loadFailAbove: 100_000, brokenAbove: 20_000 },
    "needle cliff": { needleFailAbove: 8_000 },
    "load-dependent": { needleFailAbove: 10_000, largeLoadBonus: { above: 60_000, extra: 30_000 } },
    mute: { needleFailAbove: 1_000 },
    "blind depth": { needleFailAbove: 8_000, blindDepth: { depth: 0.6, above: 7_997 } },
    "noisy band": { noisy: { floor: 20_000, hard: 40_000 } },
    garbled: { garbledAbove: 30_000 },
    "guardrail checks": { loadFailAbove: 50_000, refusalEarly: true, checks: true },
    "checks contradicted": { loadFailAbove: 40_000, guardrailAbove: 90_000, checks: true },
    "nowhere, checked": { loadsNowhere: "No LM Runtime found", checks: true },
  };
  for (const [name, model] of Object.entries(models)) {
    await t.step(
      `${name}: a stop at any call gives the same answer, repeating one attempt at most`,
      async () => {
        const { probe, result: full } = await search(model, config, name);
        const calls = probe.calls.filter((c) => c.method !== "unload").length;
        for (let k = 1; k <= calls; k++) {
          const run = await crashAndResume(model, config, k, true);
          const label = `${name}, stop at call ${k}`;
          checkRun(model, config, run.second, run.result, label);
          assert.equal(run.result.loadable, full.loadable, label);
          assert.equal(run.result.working, full.working, label);
          const extra = run.recorded.length + run.result.attempts.length - full.attempts.length;
          assert.ok(extra <= 1, `${label}: ${extra} attempts repeated`);
        }
      },
    );
  }

  await t.step("a load that took the machine down counts as crashed, never retried", async () => {
    const run = await crashAndResume({}, config, 1, false);
    assert.equal(run.crash instanceof FakeCrash && run.crash.method, "load");
    assert.deepEqual(trace(run.result.attempts.slice(0, 1)), ["loadable load 131072 crashed"]);
    assert.ok(run.second.calls.every((c) => c.method !== "load" || c.context < 131072));
    assert.ok(run.result.loadable !== null && run.result.loadable < 131072);
    assert.ok(run.result.loadable >= 131072 - config.precision);
  });

  await t.step("a confirming load that crashed counts as not working there", async () => {
    const model = { needleFailAbove: 8_000 };
    const { probe } = await search(model, config);
    const confirmCall = probe.calls.findLastIndex((c) => c.method === "load") + 1;
    const run = await crashAndResume(model, config, confirmCall, false);
    const crashed = run.result.attempts[0];
    assert.equal(crashed?.outcome, "crashed");
    assert.equal(crashed.phase, "confirm");
    assert.ok(run.result.working !== null && run.result.working < crashed.context);
  });

  await t.step("a saved state says nothing is loaded: the resumed run loads first", async () => {
    const model = { needleFailAbove: 8_000 };
    const run = await crashAndResume(model, config, 5, true);
    assert.equal(run.second.calls[0]?.method, "load");
  });
});

Deno.test("the reference algorithm is the plan's two plain bisections", async (t) => {
  const config = configFor(131072);
  const p = config.precision;
  const steps = Math.ceil(Math.log2((131072 - config.minContext) / p));

  await t.step("it reports a needle-limited model's loadable size as working", async () => {
    const model = { needleFailAbove: 8_000 };
    const reference = await referenceSearch(config, new FakeProbe(model));
    assert.ok(reference.working !== null && reference.working >= 131072 - p);
    assert.ok(reference.working > (truthOf(model, config).working ?? 0) + p, "2+2= is blind to it");
    const { result } = await search(model, config);
    assert.ok(result.working !== null && result.working <= 8_000 + RESERVE);
  });

  await t.step("it bisects by midpoints, never tests the ends and reloads each step", async () => {
    const probe = new FakeProbe({});
    const reference = await referenceSearch(config, probe);
    const loads = probe.calls.filter((c) => c.method === "load").map((c) => c.context);
    assert.equal(reference.loads, 2 * steps, "one load per halving, in each bisection");
    assert.equal(loads.length, 2 * steps);
    for (const half of [loads.slice(0, steps), loads.slice(steps)]) {
      // An honest model passes everywhere: each midpoint becomes the lower end.
      let lo = config.minContext;
      for (const context of half) {
        assert.equal(context, Math.floor((lo + 131072) / 2), "each load at the midpoint");
        lo = context;
      }
    }
    assert.ok(!loads.includes(131072) && !loads.includes(config.minContext));
    assert.ok(reference.loadable !== null && reference.loadable >= 131072 - p);
    const sanity = reference.attempts.filter((a) => a.action === "sanity");
    assert.equal(sanity.length, steps, "the second bisection judges by 2+2=");
    assert.equal(probe.calls.filter((c) => c.method === "needle").length, 0);
    assert.equal(probe.loaded, null);
    const { result } = await search({}, config);
    assert.equal(result.loads, 1);
  });

  await t.step("a load that fails counts as not working in the second bisection", async () => {
    const model = { loadFailAbove: 50_000, brokenAbove: 20_000 };
    const probe = new FakeProbe(model);
    const reference = await referenceSearch(config, probe);
    const truth = truthOf(model, config);
    assert.ok(reference.loadable !== null && truth.loadable !== null);
    assert.ok(reference.loadable <= truth.loadable);
    assert.ok(reference.loadable >= truth.loadable - p);
    assert.ok(reference.working !== null && reference.working <= 20_000);
    assert.ok(reference.working >= 20_000 - p);
    assert.equal(probe.loaded, null);
  });

  await t.step("it tests minContext once when no midpoint passes", async () => {
    const broken = new FakeProbe({ brokenAbove: 1_000 });
    const reference = await referenceSearch(config, broken);
    assert.equal(reference.working, null);
    const last = broken.calls.filter((c) => c.method === "load").at(-1);
    assert.equal(last?.context, config.minContext);
    const small = await referenceSearch(config, new FakeProbe({ brokenAbove: 2_500 }));
    assert.equal(small.working, config.minContext, "minContext itself passes");
    const none = new FakeProbe({ loadFailAbove: 1_500 });
    const nothing = await referenceSearch(config, none);
    assert.equal(nothing.loadable, null);
    assert.equal(nothing.working, null);
    assert.equal(nothing.loads, steps + 1, "nothing loads: no second bisection");
  });
});

Deno.test("the lower bound counts the unavoidable loads and prompts", async (t) => {
  const config = configFor(131072);
  const p = config.precision;
  await t.step("an honest model needs one load and one full prompt", async () => {
    const bound = lowerBound({ loadable: 131072, working: 131072 }, config);
    assert.deepEqual(bound, { loads: 1, promptTokens: 131072 - RESERVE });
    const { result } = await search({}, config);
    assert.deepEqual({ loads: result.loads, promptTokens: result.prefillTokens }, bound);
  });

  await t.step("a limited model needs the loads and prompts on both sides of each limit", () => {
    // Each limit reported as low as the precision lets it: a failure just above the truth.
    const x = 50_001 - p;
    const r = 8_001 - p;
    assert.deepEqual(lowerBoundSteps({ loadable: 50_000, working: 8_000 }, config), [
      { kind: "load", context: 50_001, ok: false },
      { kind: "load", context: x, ok: true },
      { kind: "needle", context: x, promptTokens: 8_001 - RESERVE, passes: false },
      { kind: "load", context: r, ok: true },
      { kind: "needle", context: r, promptTokens: r - RESERVE, passes: true },
    ]);
    assert.deepEqual(lowerBound({ loadable: 50_000, working: 8_000 }, config), {
      loads: 3,
      promptTokens: 8_001 - RESERVE + r - RESERVE,
    });
    assert.deepEqual(lowerBound({ loadable: null, working: null }, config), {
      loads: 1,
      promptTokens: 0,
    });
  });

  await t.step("a noisy band: the failing needle is the first that can fail", () => {
    const steps = lowerBoundSteps(
      { loadable: 131072, working: 13_064, noisyFloor: 11_016 },
      config,
    );
    assert.deepEqual(steps.slice(1, 3), [
      { kind: "needle", context: 131072, promptTokens: 11_016 - RESERVE + 1, passes: false },
      { kind: "load", context: 11_017 - p, ok: true },
    ]);
  });
});

/** Runs `steps` on a fake `model`, failing when an outcome differs from what the step says. */
async function replay(model: FakeModel, steps: LowerBoundStep[], label: string): Promise<void> {
  const probe = new FakeProbe(model, RESERVE);
  for (const [i, step] of steps.entries()) {
    const where = `${label}: step ${i} ${JSON.stringify(step)}`;
    if (step.kind === "load") {
      const outcome = await probe.load(step.context);
      const ok = outcome.kind === "loaded" && outcome.actual >= step.context;
      assert.equal(ok, step.ok, where);
    } else if (step.kind === "sanity") {
      assert.equal(probe.loaded, step.context, `2+2= runs on its instance (${where})`);
      assert.equal((await probe.sanity()).pass, false, where);
    } else {
      assert.equal(probe.loaded, step.context, `the needle runs on its instance (${where})`);
      const answer = await probe.needle(step.promptTokens, { fresh: true, depth: 0.5 });
      assert.equal(answer.pass, step.passes, where);
    }
  }
}

/** Whether `steps` prove working = `answer` for a model whose load size sets it. */
function provesByLoad(steps: LowerBoundStep[], answer: number, p: number): boolean {
  const failing = steps.filter((s) => s.kind === "sanity");
  const passing = steps.flatMap((s) => s.kind === "needle" && s.passes ? [s] : []);
  return failing.some((s) => s.context > answer && s.context <= answer + p) &&
    passing.some((s) => s.context === answer && s.promptTokens === answer - RESERVE);
}

Deno.test("the lower bound of a model broken above a load size is loads, not needles", async (t) => {
  const config = configFor(131072);
  const p = config.precision;
  await t.step("phi-3-mini: a broken load just above 49000 and a passing one below", () => {
    const truth = truthOf({ brokenAbove: 49_000 }, config);
    assert.equal(truth.byLoad, true);
    const steps = lowerBoundSteps(truth, config);
    const r = 49_001 - p;
    assert.deepEqual(steps, [
      { kind: "load", context: 131072, ok: true },
      { kind: "load", context: 49_001, ok: true },
      { kind: "sanity", context: 49_001 },
      { kind: "load", context: r, ok: true },
      { kind: "needle", context: r, promptTokens: r - RESERVE, passes: true },
    ]);
    assert.ok(provesByLoad(steps, r, p));
    assert.deepEqual(lowerBound(truth, config), { loads: 3, promptTokens: r - RESERVE });
  });

  await t.step("the loadable instance is the failing load when it is close enough", () => {
    const truth = truthOf({ loadFailAbove: 50_000, brokenAbove: 48_000 }, config);
    const steps = lowerBoundSteps(truth, config);
    const x = 50_001 - p;
    assert.deepEqual(steps.map((s) => `${s.kind} ${s.context}`), [
      "load 50001",
      `load ${x}`,
      `sanity ${x}`,
      `load ${x - p}`,
      `needle ${x - p}`,
    ]);
    assert.ok(provesByLoad(steps, x - p, p));
  });

  await t.step("nothing works: 2+2= failing on a load at minContext", () => {
    const steps = lowerBoundSteps(truthOf({ brokenAbove: 1_000 }, config), config);
    assert.deepEqual(steps.slice(1), [
      { kind: "load", context: config.minContext, ok: true },
      { kind: "sanity", context: config.minContext },
    ]);
  });

  await t.step("the steps replay as they say, and every search does at least as much", async () => {
    const random = seededRandom(4711);
    const between = (lo: number, hi: number) => Math.floor(lo + random() * (hi - lo));
    for (let i = 0; i < 200; i++) {
      const model: FakeModel = { brokenAbove: between(1_000, 140_000) };
      if (random() < 0.5) model.loadFailAbove = between(2_048, 140_000);
      if (random() < 0.3) model.needleFailAbove = between(1_000, 140_000);
      const truth = truthOf(model, config);
      const steps = lowerBoundSteps(truth, config);
      const label = `broken #${i} ${JSON.stringify(model)}`;
      await replay(model, steps, label);
      const answer = steps.at(-1)?.context ?? 0;
      const loadable = steps.find((s) => s.kind === "load" && s.ok)?.context ?? 0;
      if (truth.byLoad === true && truth.working !== null && answer < loadable) {
        assert.ok(provesByLoad(steps, answer, p), label);
      }
      const bound = lowerBound(truth, config);
      const { result } = await search(model, config, label);
      assert.ok(result.loads >= bound.loads, `${label}: ${result.loads} loads < ${bound.loads}`);
      assert.ok(result.promptTokens >= bound.promptTokens, `${label}: fewer prompt tokens`);
      const reference = await referenceSearch(config, new FakeProbe(model));
      assert.ok(reference.loads >= bound.loads, `${label}: the reference beats the bound`);
    }
  });
});

Deno.test("splitPoint keeps the bisection's worst case while leaning high", () => {
  for (const [lo, hi, p] of [[0, 1000, 100], [2048, 131072, 1310], [5, 7, 1], [0, 257, 256]]) {
    const x = splitPoint(lo ?? 0, hi ?? 0, p ?? 1);
    assert.ok(x > (lo ?? 0) && x < (hi ?? 0), `${x} inside (${lo}, ${hi})`);
    const steps = (r: number) => Math.max(0, Math.ceil(Math.log2(r / (p ?? 1))));
    const worst = Math.max(steps(x - (lo ?? 0)), steps((hi ?? 0) - x));
    assert.equal(worst, steps((hi ?? 0) - (lo ?? 0)) - 1);
  }
});

Deno.test("the climbing step never drops below the precision and shrinks as prefill dearer", () => {
  for (const p of [256, 1310, 10485]) {
    let previous = 0;
    for (const from of [1024, 4096, 16_384, 65_536, 262_144]) {
      const step = climbStep(from, p);
      assert.ok(step >= p, `step ${step} below the precision ${p}`);
      assert.ok(step >= previous, "it grows with the position");
      previous = step;
    }
  }
  assert.ok(climbStep(2_048, 256) / 2_048 > climbStep(131_072, 256) / 131_072);
});

Deno.test("the load planner keeps its load allowance and makes fewer loads succeed", () => {
  for (const units of [2, 5, 17, 64, 100]) {
    const bisection = Math.ceil(Math.log2(units)) + 1;
    for (const loads of [bisection, bisection + 2]) {
      let successes = 0;
      let plainSuccesses = 0;
      for (let limit = 0; limit < units; limit++) {
        // Follow the plan for a limit `limit + 0.5` units above the lowest size.
        let lo = 0;
        let hi = units;
        let loaded = false;
        let used = 0;
        while (hi - lo > 1) {
          const { step, cost } = planLoads(hi - lo, loaded, loads - used);
          assert.ok(cost < Infinity && step >= 1 && step < hi - lo);
          used++;
          if (lo + step <= limit + 0.5) {
            lo += step;
            loaded = true;
            successes++;
          } else {
            hi = lo + step;
            loaded = false;
          }
        }
        if (!loaded) {
          used++;
          successes++;
        }
        assert.ok(used <= loads, `${used} loads > ${loads} for ${units} units`);
        lo = 0;
        hi = units;
        loaded = false;
        while (hi - lo > 1) {
          const mid = Math.floor((lo + hi) / 2);
          if (mid <= limit + 0.5) [lo, loaded, plainSuccesses] = [mid, true, plainSuccesses + 1];
          else [hi, loaded] = [mid, false];
        }
        if (!loaded) plainSuccesses++;
      }
      assert.ok(successes <= plainSuccesses, `${successes} > ${plainSuccesses} (${units} units)`);
    }
  }
  assert.equal(planLoads(100, false, 3).cost, Infinity, "too few loads for 100 units");
  assert.ok(loadableAllowance(configFor(131072)) <= loadBudget(configFor(131072)));
});

Deno.test("without a cache the full length goes first when it is likely and saves more", () => {
  // At the memory limit (one chance in two) a full-length probe saves the growing scan's passes.
  assert.equal(fullProbeFirst(5_429, 40_000, 1311, true), true);
  assert.equal(fullProbeFirst(5_429, 58_421, 1311, true), true);
  // At the declared size (one in four) it would mostly be paid for nothing.
  assert.equal(fullProbeFirst(5_429, 131_072, 1311, false), false);
  // Next to the pass, nothing is saved: the scan reaches the full length anyway.
  assert.equal(fullProbeFirst(39_000, 40_000, 1311, true), false);
});

/**
 * The working phase's decision, tested directly: from a state and the settings, the next move
 * (done, go on with a load-level test, start one, or a prompt on the instance), with no probe.
 *
 * @module
 */

import assert from "node:assert/strict";
import { timedNoCacheCosts } from "./support/costs.ts";
import {
  choosePlan,
  climbStep,
  initialState,
  nextWorkingMove,
  noCosts,
  normaliseState,
  type NormalState,
  type SearchConfig,
  type SearchState,
} from "../src/search/context_search.ts";

const CONFIG: SearchConfig = { declared: 131072, minContext: 2048, precision: 1311, reserve: 64 };

/** A state in the working phase: loadable 131072, loaded and healthy there, nothing probed. */
function working(extra: Partial<NormalState> = {}): NormalState {
  return {
    ...initialState(CONFIG),
    phase: "working",
    loadOk: 131072,
    loadable: 131072,
    saneOk: 131072,
    instance: 131072,
    ...extra,
  };
}

const noCache = () => {
  const costs = { ...noCosts(), promptCache: false };
  return { costs, plan: choosePlan(costs) };
};

Deno.test("the working phase's next move is a pure function of the state", async (t) => {
  await t.step("done once the working bound reaches the loadable one", () => {
    assert.deepEqual(nextWorkingMove(working({ workOk: 131072 }), CONFIG), {
      kind: "done",
      working: 131072,
    });
  });
  await t.step("done within the precision of the smallest failure", () => {
    const move = nextWorkingMove(working({ workOk: 20000, workFail: 21000 }), CONFIG);
    assert.deepEqual(move, { kind: "done", working: 20000 });
  });
  await t.step("null when it failed while loaded at minContext", () => {
    const move = nextWorkingMove(working({ workFail: 2048, workFailLoaded: 2048 }), CONFIG);
    assert.deepEqual(move, { kind: "done", working: null });
  });
  await t.step("a load-level test under way goes on", () => {
    const target = { context: 30000, fresh: true, backoff: true };
    assert.deepEqual(nextWorkingMove(working({ target }), CONFIG), { kind: "run-target", target });
  });
  await t.step("with a prompt cache the scan climbs in small steps on the instance", () => {
    const move = nextWorkingMove(working(), CONFIG);
    assert.deepEqual(move, {
      kind: "prompt",
      size: 2048 + climbStep(2048, 1311),
      recheck: false,
      hint: null,
      instance: 131072,
    });
  });
  await t.step("without one it grows the prompt by half", () => {
    const move = nextWorkingMove(working({ ...noCache(), hint: 8000 }), CONFIG);
    assert.equal(move.kind, "prompt");
    assert.equal(move.kind === "prompt" && move.size, 12000);
  });
  await t.step("without one, at the memory limit, it probes the full length first", () => {
    // Refused just above the instance: the model most likely works at its full length, and one
    // full-length probe costs less than the growing scan's passes on the way there.
    const capped = { loadOk: 40000, loadable: 40000, loadFail: 41000, instance: 40000 };
    const move = nextWorkingMove(working({ ...capped, saneOk: 40000, hint: 5429, ...noCache() }), {
      ...CONFIG,
    });
    assert.deepEqual(move, {
      kind: "set-target",
      target: { context: 40000, fresh: false },
      hint: 5429,
      instance: 40000,
    });
    // With the cache it climbs as before: the full-length probe would save little there.
    const cached = nextWorkingMove(working({ ...capped, saneOk: 40000, hint: 5429 }), CONFIG);
    assert.equal(cached.kind, "prompt");
  });
  await t.step("below a failure it walks down with a cache and takes the midpoint without", () => {
    const bounds = { hint: 20000, workFail: 24000 };
    const cached = nextWorkingMove(working(bounds), CONFIG);
    assert.equal(cached.kind === "prompt" && cached.size, 24000 - 1311);
    const uncached = nextWorkingMove(working({ ...bounds, ...noCache() }), CONFIG);
    assert.equal(uncached.kind === "prompt" && uncached.size, 22000);
    // Across more than a factor two, the middle on a log scale: sqrt(5000 * 40000).
    const wide = nextWorkingMove(working({ hint: 5000, workFail: 40000, ...noCache() }), CONFIG);
    assert.equal(wide.kind === "prompt" && wide.size, 14142);
  });
  await t.step(
    "without one, a probe whose pass would end the scan is a load if loads cost less",
    () => {
      // Midpoint 21000 of [20000, 22000]: a pass there ends the scan, and a pass by a prompt would
      // need a confirming load and a whole fresh prompt anyway.
      const bounds = { hint: 20000, workFail: 22000, promptPassed: true };
      const costs = (secondsPerToken: number) => ({
        ...noCosts(),
        promptCache: false,
        loads: 2,
        loadSeconds: 10,
        coldSecondsPerToken: secondsPerToken,
      });
      const dearPrompts = costs(0.001); // 21 s of prefill against a 5 s load
      const byLoad = nextWorkingMove(
        working({ ...bounds, costs: dearPrompts, plan: choosePlan(dearPrompts) }),
        CONFIG,
      );
      assert.deepEqual(byLoad, {
        kind: "set-target",
        target: { context: 21000, fresh: true },
        hint: 20000,
        instance: 131072,
      });
      const cheapPrompts = costs(0.0001); // 2.1 s of prefill against a 5 s load
      const byPrompt = nextWorkingMove(
        working({ ...bounds, costs: cheapPrompts, plan: choosePlan(cheapPrompts) }),
        CONFIG,
      );
      assert.equal(byPrompt.kind === "prompt" && byPrompt.size, 21000);
      // A probe whose pass would not end the scan stays a prompt however dear prompts are.
      const wide = {
        ...bounds,
        workFail: 30000,
        costs: dearPrompts,
        plan: choosePlan(dearPrompts),
      };
      assert.equal(nextWorkingMove(working(wide), CONFIG).kind, "prompt");
    },
  );
  await t.step(
    "without one, on an instance no larger than the pass, the plan's size is loaded",
    () => {
      // A confirming load at 60,000 passed and is the instance: the plan's next size above it is
      // tested as a load there, not by reloading the full length for a needle (or a full probe).
      const costs = timedNoCacheCosts(8192);
      const state = working({ costs, plan: choosePlan(costs), workOk: 60000, instance: 60000 });
      const move = nextWorkingMove(state, CONFIG);
      assert.equal(move.kind, "set-target");
      const target = move.kind === "set-target" ? move.target : null;
      assert.equal(target?.fresh, true);
      assert.ok(target !== null && target.context > 60000 && target.context < 131072, `${target}`);
    },
  );
  await t.step("a hint outside the bounds is dropped", () => {
    const move = nextWorkingMove(working({ hint: 30000, workFail: 25000 }), CONFIG);
    assert.ok(move.kind === "prompt" || move.kind === "set-target");
    assert.equal(move.hint, null);
  });
  await t.step("a hint next to the failure is rechecked on the cache, else confirmed", () => {
    const near = { hint: 29000, workFail: 30000 };
    assert.deepEqual(nextWorkingMove(working(near), CONFIG), {
      kind: "prompt",
      size: 29000,
      recheck: true,
      hint: 29000,
      instance: 131072,
    });
    const crashed = { ...noCosts(), crashes: 1 };
    assert.deepEqual(nextWorkingMove(working({ ...near, costs: crashed }), CONFIG), {
      kind: "set-target",
      target: { context: 29000, fresh: true, backoff: true },
      hint: 29000,
      instance: 131072,
    });
  });
  await t.step("after a crash took the instance, the scan reloads below the failure", () => {
    const move = nextWorkingMove(working({ instance: null, hint: 20000, workFail: 28000 }), CONFIG);
    assert.equal(move.kind, "prompt");
    assert.equal(move.kind === "prompt" && move.instance, 28000);
  });
  await t.step("once prompts are distrusted, every size is a load-level test", () => {
    const move = nextWorkingMove(
      working({ distrustPrompts: true, workOk: 10000, workFail: 30000 }),
      CONFIG,
    );
    assert.equal(move.kind, "set-target");
    assert.equal(move.kind === "set-target" && move.target.fresh, true);
  });
  await t.step("the same state gives the same move, and the state is not touched", () => {
    const state = working({ hint: 30000, workFail: 25000, instance: null });
    const before = structuredClone(state);
    assert.deepEqual(nextWorkingMove(state, CONFIG), nextWorkingMove(state, CONFIG));
    assert.deepEqual(state, before);
  });
});

Deno.test("a state saved before the newer fields existed is made whole once", () => {
  const old = structuredClone(working()) as Partial<SearchState>;
  for (const key of ["hintBelow", "hintChecked", "promptFailOn", "loadableLoads"] as const) {
    delete old[key];
  }
  delete old.costs;
  delete old.plan;
  delete old.lastRefusal;
  const state = normaliseState(old as SearchState);
  assert.equal(state.hintBelow, null);
  assert.equal(state.loadableLoads, 0);
  assert.deepEqual(state.costs, noCosts());
  assert.deepEqual(state.plan, choosePlan(noCosts()));
  assert.equal(state.lastRefusal, null);
  assert.deepEqual(nextWorkingMove(state, CONFIG), nextWorkingMove(working(), CONFIG));
});

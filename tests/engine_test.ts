/**
 * Unit tests of the engine's pure parts (option checks, the choice of models, the resume point,
 * the record after a result) and of its journal, without a server.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ModelNotFoundError, UsageError } from "../src/errors.ts";
import { chooseModels } from "../src/engine/choose_models.ts";
import { Journal } from "../src/engine/journal.ts";
import {
  attemptEntry,
  costsOf,
  recordAfterFault,
  recordAfterSearch,
  recordStarting,
  resultOf,
} from "../src/engine/outcome.ts";
import { type CrashEvidence, resumePoint, savedSearch } from "../src/engine/resume.ts";
import {
  defaultPrecision,
  RESERVE_TOKENS,
  searchConfigFor,
  validateTestOptions,
} from "../src/engine/test_options.ts";
import { readAttempts } from "../src/registry/attempt_log.ts";
import { loadRegistry } from "../src/registry/registry.ts";
import { choosePlan, initialState, noCosts } from "../src/search/context_search.ts";
import { record, registryOf, withTempPaths } from "./support/records.ts";

Deno.test("test options are checked before anything is touched", async (t) => {
  await t.step("counts must be positive whole numbers", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 60]) {
      assert.throws(() => validateTestOptions({ precision: bad }), UsageError);
      assert.throws(() => validateTestOptions({ minContext: bad }), UsageError);
      assert.throws(() => validateTestOptions({ maxContext: bad }), UsageError);
    }
  });
  await t.step("--min-context above --max-context is refused with a hint", () => {
    assert.throws(() => validateTestOptions({ minContext: 8192, maxContext: 4096 }), (e) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, /--min-context \(8192\) is above --max-context \(4096\)/);
      assert.ok(e.hint);
      return true;
    });
  });
  await t.step("a timeout must be a positive number of seconds", () => {
    for (const bad of [0, -2, Number.POSITIVE_INFINITY, Number.NaN]) {
      assert.throws(() => validateTestOptions({ timeoutSeconds: bad }), UsageError);
    }
    validateTestOptions({ timeoutSeconds: 0.5, precision: 256, minContext: 256, maxContext: 256 });
  });
});

Deno.test("the search configuration follows the model and the options", () => {
  const model = record("m", { declaredContext: 131072 });
  assert.deepEqual(searchConfigFor(model, {}), {
    declared: 131072,
    minContext: 2048,
    precision: defaultPrecision(131072),
    reserve: RESERVE_TOKENS,
  });
  assert.equal(defaultPrecision(131072), 1311);
  assert.equal(defaultPrecision(8192), 256);
  const small = record("s", { declaredContext: 1024 });
  assert.equal(searchConfigFor(small, {}).minContext, 1024, "never above the declared context");
  assert.equal(searchConfigFor(model, { maxContext: 4096 }).maxContext, 4096);
});

Deno.test("a test resumes a saved search when it is the same search, forced or not", async (t) => {
  const config = searchConfigFor(record("m"), {});
  const state = { ...initialState(config), loadOk: 4096, pendingLoad: 6144 };
  const saved = savedSearch(state, config, 77);

  await t.step("an interrupted search resumes with its seed and its crash marker", () => {
    const point = resumePoint(record("m", { status: "testing", search: saved }), config);
    assert.equal(point.resumed, true);
    assert.equal(point.seed, 77);
    assert.equal(point.state.loadOk, 4096);
    // Nothing is known of the machine's boot: the marked size is probed again.
    assert.equal(point.crash?.context, 6144);
    assert.equal(point.crash?.verdict, "retry");
    assert.equal(point.diedLoading, 6144);
    assert.equal("config" in point.state, false, "the engine's keys stay out of the search");
  });
  await t.step("a failed model's saved search resumes too", () => {
    const point = resumePoint(record("m", { status: "failed", search: saved }), config);
    assert.equal(point.resumed, true);
  });
  await t.step("a forced retest cut short (back to tested, search kept) resumes", () => {
    const point = resumePoint(record("m", { status: "tested", search: saved }), config);
    assert.equal(point.resumed, true);
  });
  await t.step("another configuration or no saved search start afresh", () => {
    const testing = record("m", { status: "testing", search: saved });
    for (
      const point of [
        resumePoint(testing, { ...config, precision: config.precision + 1 }),
        resumePoint(record("m", { status: "tested" }), config),
        resumePoint(record("m", { status: "testing" }), config),
      ]
    ) {
      assert.equal(point.resumed, false);
      assert.equal(point.seed, undefined);
      assert.deepEqual(point.state, initialState(config));
    }
  });
});

Deno.test("the record after a result says what was found, and why not", async (t) => {
  const config = searchConfigFor(record("m"), {});
  const running = recordStarting(
    record("m", { status: "failed", error: "old", search: { x: 1 }, cappedAt: 4096 }),
    config,
  );
  await t.step("starting marks it testing with the precision in use", () => {
    assert.equal(running.status, "testing");
    assert.equal(running.error, null);
    assert.equal(running.precision, config.precision);
  });
  await t.step("found limits make it tested, drop the search and the old cap", () => {
    const done = recordAfterSearch(running, { loadable: 8192, working: 6000 }, config, "T");
    assert.equal(done.status, "tested");
    assert.equal(done.loadableContext, 8192);
    assert.equal(done.workingContext, 6000);
    assert.equal(done.testedAt, "T");
    assert.equal("search" in done, false);
    assert.equal("cappedAt" in done, false);
    assert.deepEqual(running.search, { x: 1 }, "the record given is left as it was");
  });
  await t.step("a limit equal to --max-context is marked as capped", () => {
    const capped = { ...config, maxContext: 4096 };
    const done = recordAfterSearch(running, { loadable: 4096, working: 4096 }, capped, "T");
    assert.equal(done.cappedAt, 4096);
  });
  await t.step("nothing loadable or nothing working makes it failed with the reason", () => {
    const unloadable = recordAfterSearch(running, { loadable: null, working: null }, config, "T");
    assert.equal(unloadable.status, "failed");
    assert.match(unloadable.error ?? "", /did not load at 2048 tokens or more/);
    const deaf = recordAfterSearch(running, { loadable: 8192, working: null }, config, "T");
    assert.equal(deaf.status, "failed");
    assert.match(deaf.error ?? "", /No context of 2048 tokens or more answered/);
  });
  await t.step("a search that gave up makes it failed with the search's reason", () => {
    const failure = "Its loads stopped being repeatable: 8192 tokens failed to load";
    const found = { loadable: null, working: null, lastRefusal: "Failed to load model", failure };
    const gaveUp = recordAfterSearch(running, found, config, "T");
    assert.equal(gaveUp.status, "failed");
    assert.equal(gaveUp.error, failure);
  });
  await t.step("a fault makes it failed but keeps the search to resume", () => {
    const failed = recordAfterFault(running, "Model unloaded");
    assert.equal(failed.status, "failed");
    assert.equal(failed.error, "Model unloaded");
    assert.deepEqual(failed.search, { x: 1 });
  });
  await t.step("the result reports the reduction and what was spent", () => {
    const done = recordAfterSearch(running, { loadable: 8192, working: 6144 }, config, "T");
    assert.deepEqual(resultOf(done, { loads: 3, promptTokens: 900 }), {
      id: "m",
      declaredContext: 8192,
      loadableContext: 8192,
      workingContext: 6144,
      reductionPercent: 25,
      status: "tested",
      loads: 3,
      promptTokens: 900,
      error: null,
      kept: false,
    });
    assert.equal(resultOf(done, { loads: 0, promptTokens: 0 }, true).kept, true);
  });
});

Deno.test("one rule picks the models of a run: tested ones keep their numbers unless forced", async (t) => {
  const registry = registryOf(
    record("big", { sizeBytes: 30 }),
    record("small", { sizeBytes: 10 }),
    record("done", { sizeBytes: 5, status: "tested", testedAt: "2025-01-01T00:00:00.000Z" }),
    record("gone", { sizeBytes: 1, status: "missing" }),
    record("embed", { sizeBytes: 2, type: "embedding" }),
    record("also-small", { sizeBytes: 10 }),
    record("dud", { sizeBytes: 3, status: "failed", error: "It did not load" }),
    record("cut", { sizeBytes: 4, status: "failed", error: "timeout", search: { x: 1 } }),
  );
  const ids = (list: { id: string }[]) => list.map((r) => r.id);
  const plain = { force: false, retryFailed: false };
  await t.step("--all: untested and cut-short ones, smallest first", () => {
    const run = chooseModels(registry, "all", plain);
    assert.deepEqual(ids(run.chosen), ["cut", "also-small", "small", "big"]);
    assert.deepEqual(run.skipped.map((s) => `${s.id}:${s.status}`), ["dud:failed", "done:tested"]);
    assert.match(run.skipped[0]!.reason, /--retry-failed/);
    assert.match(run.skipped[1]!.reason, /--force/);
  });
  await t.step("--all --retry-failed adds the failed ones, --force every one", () => {
    const retry = chooseModels(registry, "all", { force: false, retryFailed: true });
    assert.deepEqual(ids(retry.chosen), ["dud", "cut", "also-small", "small", "big"]);
    const forced = chooseModels(registry, "all", { force: true, retryFailed: false });
    assert.deepEqual(ids(forced.chosen), ["dud", "cut", "done", "also-small", "small", "big"]);
    assert.deepEqual(forced.skipped, []);
  });
  await t.step("names, each once, in order; a named tested model needs --force", () => {
    const run = chooseModels(registry, ["big", "done", "dud", "big"], plain);
    assert.deepEqual(ids(run.chosen), ["big", "dud"], "naming a failed model retries it");
    assert.deepEqual(ids(run.skipped), ["done"]);
    const forced = chooseModels(registry, ["big", "done"], { force: true, retryFailed: false });
    assert.deepEqual(ids(forced.chosen), ["big", "done"]);
  });
  await t.step("a forced run cut short resumes: what it retested since is left out", () => {
    const since = "2025-06-01T00:00:00.000Z";
    const resumed = registryOf(
      record("a", { status: "tested", testedAt: "2025-06-01T00:05:00.000Z" }),
      record("b", { status: "testing", retestPending: since, search: { x: 1 } }),
      record("c", { status: "tested", testedAt: "2025-01-01T00:00:00.000Z", retestPending: since }),
      record("d", { status: "tested", testedAt: "2025-01-01T00:00:00.000Z" }),
    );
    const run = chooseModels(resumed, "all", { force: true, retryFailed: false });
    assert.deepEqual(ids(run.chosen), ["b", "c", "d"], "d was tested before the forced run");
    assert.deepEqual(ids(run.skipped), ["a"]);
    assert.match(run.skipped[0]!.reason, /resumes/);
  });
  await t.step("embedding, missing and unknown models are refused", () => {
    assert.throws(() => chooseModels(registry, ["embed"], plain), UsageError);
    assert.throws(() => chooseModels(registry, ["gone"], plain), UsageError);
    assert.throws(() => chooseModels(registry, ["nothing-like-it"], plain), ModelNotFoundError);
  });
});

Deno.test("the journal saves the registry and appends each model's log", async () => {
  await withTempPaths(async (paths) => {
    const registry = registryOf(record("a"), record("b"));
    const journal = new Journal(paths, registry);
    await journal.put(record("a", { status: "testing" }));
    assert.equal((await loadRegistry(paths)).models["a"]?.status, "testing");
    assert.equal((await loadRegistry(paths)).models["b"]?.status, "untested");
    const line = attemptEntry(
      "a",
      { phase: "loadable", action: "load", context: 4096, actual: 4096, outcome: "loaded" },
      { durationMs: 1500, retries: 1 },
      "2025-01-02T03:04:05.000Z",
    );
    await journal.log(line);
    assert.deepEqual(await readAttempts(paths, "a"), [line]);
    assert.equal(line.promptTokens, null);
    assert.equal(line.retries, 1);
  });
});

Deno.test("a crash marker is judged by the evidence", async (t) => {
  const config = searchConfigFor(record("m"), {});
  const settled = { ...initialState(config), loadOk: 4096 };
  const marked = { ...settled, pendingLoad: 6144, loadableLoads: 1 };
  const since = "2025-01-02T03:04:05.000Z";
  const boot = { bootId: "boot-1", uptimeMs: 3_600_000, bootTimeMs: Date.parse(since) - 3_600_000 };
  const saved = savedSearch(marked, config, 7, { pendingSince: since, pendingBoot: boot, settled });
  const at = (search: unknown, evidence: CrashEvidence) =>
    resumePoint(record("m", { status: "testing", search }), config, evidence);

  await t.step("the same boot: retried from the settled state", () => {
    const point = at(saved, { orphans: [], bootTime: { ...boot, uptimeMs: 3_700_000 } });
    assert.equal(point.crash?.verdict, "retry");
    assert.deepEqual(point.state, settled, "the load is not counted twice");
    assert.equal(point.diedLoading, 6144);
  });
  await t.step("the wall clock stepped forward an hour, same boot: retried, not crashed", () => {
    // NTP after boot, a VM resumed, `date -s`: now - uptime moves, the boot id does not.
    const stepped = { ...boot, uptimeMs: 3_700_000, bootTimeMs: boot.bootTimeMs + 7_200_000 };
    assert.equal(at(saved, { orphans: [], bootTime: stepped }).crash?.verdict, "retry");
    const { bootId: _, ...noId } = stepped;
    const point = at(saved, { orphans: [], bootTime: noId });
    assert.equal(point.crash?.verdict, "retry", "without a boot id: unknown, probed again");
    assert.match(point.crash!.reason, /unknown/);
  });
  await t.step("another boot id, or an uptime that went back: crashed", () => {
    for (const now of [{ ...boot, bootId: "boot-2" }, { uptimeMs: 60_000 }]) {
      const point = at(saved, { orphans: [], bootTime: now });
      assert.equal(point.crash?.verdict, "crashed", JSON.stringify(now));
      assert.equal(point.state.pendingLoad, 6144, "the search counts it as not loadable");
    }
  });
  await t.step("on macOS (no boot id) the boot time within a tolerance: the same boot", () => {
    const mac = { uptimeMs: 3_600_000, bootTimeMs: boot.bootTimeMs };
    const macSaved = savedSearch(marked, config, 7, { pendingSince: since, pendingBoot: mac });
    const now = { uptimeMs: 3_650_000, bootTimeMs: boot.bootTimeMs + 1_000 };
    const point = at(macSaved, { orphans: [], bootTime: now });
    assert.deepEqual([point.crash?.verdict, point.crash?.reason], [
      "retry",
      "the machine did not restart since",
    ]);
  });
  await t.step("nothing known of the boot: the size is probed again, never failed", () => {
    assert.equal(at(saved, { orphans: [], bootTime: undefined }).crash?.verdict, "retry");
    const old = savedSearch(marked, config, 7, { pendingSince: since });
    assert.equal(at(old, { orphans: [], bootTime: boot }).crash?.verdict, "retry");
  });
  await t.step("a second death at the same size: crashed, unless its instance is there", () => {
    const twice = { ...saved, diedLoading: 6144 };
    assert.equal(at(twice, { orphans: [], bootTime: boot }).crash?.verdict, "crashed");
    assert.equal(at(twice, { orphans: [6144], bootTime: boot }).crash?.verdict, "retry");
    assert.equal(at(twice, { orphans: [4096], bootTime: boot }).crash?.verdict, "crashed");
  });
});

Deno.test("a stopped test leaves the record as it was before, resumable, never 'testing'", async (t) => {
  const { recordStopped } = await import("../src/engine/outcome.ts");
  const search = { done: false };
  await t.step("an untested model goes back to untested, keeping its search", () => {
    const before = record("m");
    const stopped = recordStopped({ ...before, status: "testing", search }, before);
    assert.equal(stopped.status, "untested");
    assert.deepEqual(stopped.search, search);
  });
  await t.step("a failed one stays failed with its reason, a tested one tested", () => {
    const failed = record("m", { status: "failed", error: "boom" });
    assert.equal(
      recordStopped({ ...failed, status: "testing", error: null }, failed).error,
      "boom",
    );
    const tested = record("m", { status: "tested", workingContext: 4096 });
    assert.equal(recordStopped({ ...tested, status: "testing" }, tested).status, "tested");
  });
});

Deno.test("the record keeps mean costs, checks included, and the plan in words", () => {
  const costs = { ...noCosts(), refusals: 2, refusalSeconds: 0.6, checks: 4, checkSeconds: 3 };
  const kept = costsOf(costs, choosePlan(costs, true));
  assert.equal(kept.refusalSeconds, 0.3);
  assert.equal(kept.checkSeconds, 0.75);
  assert.equal(kept.loadSeconds, null);
  assert.match(kept.plan, /^bisect with checks/);
  const unchecked = costsOf(noCosts(), choosePlan(noCosts()));
  assert.equal(unchecked.checkSeconds, null);
});

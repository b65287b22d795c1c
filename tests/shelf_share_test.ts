/**
 * The shelf's share of models that work at their limit (`src/search/shelf_share.ts`): learned
 * from the tested models, carried into the search's settings by the engine, kept by a resumed
 * search, and used by the working plan.
 *
 * @module
 */

import assert from "node:assert/strict";
import { timedNoCacheCosts } from "./support/costs.ts";
import {
  DEFAULT_WORKS_AT_LIMIT,
  PRIOR_MODELS,
  worksAtLimitShare,
} from "../src/search/shelf_share.ts";
import { withShelfShare } from "../src/engine/test_options.ts";
import {
  choosePlan,
  initialState,
  nextWorkingMove,
  type NormalState,
  type SearchConfig,
} from "../src/search/context_search.ts";
import type { ModelRecord } from "../src/registry/model_record.ts";

const limited = (working: number) => ({
  declared: 131072,
  loadable: 40000,
  working,
  precision: 1311,
});

Deno.test("the share counts the tested models whose loads stopped below their declared size", () => {
  assert.equal(worksAtLimitShare([]).share, DEFAULT_WORKS_AT_LIMIT);
  const works = [limited(40000), limited(39000), limited(40000), limited(40000)];
  assert.deepEqual(worksAtLimitShare(works), {
    share: (4 + PRIOR_MODELS * DEFAULT_WORKS_AT_LIMIT) / (4 + PRIOR_MODELS),
    limited: 4,
    works: 4,
  });
  const stops = [limited(9000), limited(20000), limited(1000), limited(38000)];
  assert.equal(worksAtLimitShare(stops).works, 0);
  assert.ok(worksAtLimitShare(stops).share < DEFAULT_WORKS_AT_LIMIT);
  // Loads that did not stop below the declared size, a cap, or no number: not counted.
  const others = [
    { ...limited(40000), loadable: 131072, working: 131072 },
    { ...limited(40000), cappedAt: 40000 },
    { ...limited(40000), working: null },
    { ...limited(40000), loadable: null },
  ];
  assert.equal(worksAtLimitShare(others).limited, 0);
});

/** A registry record, tested, loadable at 40,000 of 131,072. */
function record(id: string, working: number, extra: Partial<ModelRecord> = {}): ModelRecord {
  return {
    id,
    type: "llm",
    path: `${id}.gguf`,
    sizeBytes: 1,
    architecture: "llama",
    declaredContext: 131072,
    loadableContext: 40000,
    workingContext: working,
    status: "tested",
    testedAt: null,
    error: null,
    precision: 1311,
    ...extra,
  } as ModelRecord;
}

Deno.test("a run takes the share from the other tested models; a resumed search keeps its own", () => {
  const config: SearchConfig = { declared: 131072, minContext: 2048, precision: 1311, reserve: 64 };
  const me = record("me", 0, { status: "untested", loadableContext: null, workingContext: null });
  const shelf = [me, record("a", 40000), record("b", 40000), record("c", 12000)];
  const learned = withShelfShare(config, me, shelf).worksAtLimit;
  assert.equal(learned, worksAtLimitShare([limited(40000), limited(40000), limited(12000)]).share);
  // Its own record does not count, nor do untested ones.
  assert.equal(withShelfShare(config, record("a", 40000), shelf.slice(0, 2)).worksAtLimit, 0.25);
  const saved = { ...me, search: { config: { ...config, worksAtLimit: 0.9 } } };
  assert.equal(withShelfShare(config, saved, shelf).worksAtLimit, 0.9);
  // Other settings, or a value no share can have: learned again.
  const other = { ...me, search: { config: { ...config, precision: 2000, worksAtLimit: 0.9 } } };
  assert.equal(withShelfShare(config, other, shelf).worksAtLimit, learned);
  const hostile = { ...me, search: { config: { ...config, worksAtLimit: 7 } } };
  assert.equal(withShelfShare(config, hostile, shelf).worksAtLimit, learned);
});

Deno.test("without a prompt cache, the working plan weighs the full length by the share", () => {
  const config: SearchConfig = { declared: 131072, minContext: 2048, precision: 1311, reserve: 64 };
  const costs = timedNoCacheCosts(24576);
  // Loaded at 40,000, refused just above: the instance is as large as memory allows.
  const state: NormalState = {
    ...initialState(config),
    phase: "working",
    loadOk: 40000,
    loadable: 40000,
    loadFail: 41000,
    saneOk: 40000,
    instance: 40000,
    hint: 8000,
    costs,
    plan: choosePlan(costs),
  };
  const size = (share: number) => {
    const move = nextWorkingMove(state, { ...config, worksAtLimit: share });
    if (move.kind === "set-target") return move.target.context;
    return move.kind === "prompt" ? move.size : null;
  };
  assert.equal(size(0.9), 40000, "most such models work there: the full length first");
  const low = size(0.02);
  assert.ok(low !== null && low < 40000, `hardly any do: a shorter probe first (${low})`);
});

/**
 * Shelves tested in turn (`scripts/bench/shelf_runs.ts`): a run that learns its shelf's share of
 * models working at their limit ends near each prior's own, and in regime b (no cache, where the
 * working plan uses it) spends less than with the default share on the same truths.
 *
 * @module
 */

import assert from "node:assert/strict";
import { benchConfig, REGIMES } from "../scripts/bench/regimes.ts";
import { SHELF_SEED, shelfRuns } from "../scripts/bench/shelf_runs.ts";
import { DEFAULT_WORKS_AT_LIMIT } from "../src/search/shelf_share.ts";
import { loadFleet } from "./support/emulator.ts";

Deno.test("a run that learns its shelf ends near the prior's share and spends less in b", async () => {
  const b = REGIMES.find((r) => r.key === "b")!;
  const fleet = (await loadFleet()).filter((p) => p.type === "llm").map(b.apply);
  const models = fleet.map((profile) => ({ profile, config: benchConfig(profile) }));
  const shelves = 40;
  const uniform = await shelfRuns(models, "uniform", shelves);
  const shelf = await shelfRuns(models, "shelf", shelves);
  assert.equal(uniform.runs, shelves * models.length);
  // Hardly any model works at its limit under the uniform prior, half of them under the shelf's.
  assert.ok(uniform.lastShare < DEFAULT_WORKS_AT_LIMIT, `${uniform.lastShare}`);
  assert.ok(shelf.lastShare > DEFAULT_WORKS_AT_LIMIT, `${shelf.lastShare}`);
  for (const [prior, learned] of [["uniform", uniform], ["shelf", shelf]] as const) {
    const fixed = await shelfRuns(models, prior, shelves, SHELF_SEED, false);
    assert.equal(fixed.best, learned.best, "the same truths");
    assert.ok(
      learned.ours < fixed.ours,
      `${prior}: learned ${learned.ours}, default ${fixed.ours}`,
    );
    assert.ok(learned.ours >= learned.best, "never below the best");
  }
});

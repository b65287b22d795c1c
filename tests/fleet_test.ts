/**
 * The search's budget on the demo fleet, end to end: the CLI as users run it, the real SDK, the
 * emulator's models with known truth. Every number within the precision and never above the
 * truth, at most 2·⌈log2(declared / precision)⌉ + 3 loads per model, one load for the model that
 * is honest at its declared size, nothing left loaded.
 */

import assert from "node:assert/strict";
import type { TestResult } from "../src/engine/test_events.ts";
import { profileTruth } from "../scripts/emulator/profile.ts";
import { RESERVE_TOKENS } from "../src/lmstrix.ts";
import { runCli, tempHome } from "./support/cli.ts";
import { loadFleet, withEmulator } from "./support/emulator.ts";
import { checksByModel, readLog } from "./support/reliability.ts";
import { worksAtLimitShare } from "../src/search/shelf_share.ts";

/** One model's outcome in `test --json`. */
type Result = TestResult;

Deno.test("test --all on the demo fleet keeps the budget and gets every number right", async (t) => {
  const fleet = await loadFleet();
  await using home = await tempHome();
  await withEmulator(fleet, async (emulator) => {
    const env = { LMSTRIX_SERVER: emulator.url };
    const scan = await runCli(["scan", "--quiet"], { home: home.path, env });
    assert.equal(scan.code, 0, scan.stderr);
    const run = await runCli(["test", "--all", "--json"], { home: home.path, env });
    // The model that loads at no size is failed: exit 1, everything else tested.
    assert.equal(run.code, 1, run.stderr);
    const { results } = JSON.parse(run.stdout) as { results: Result[] };
    const llms = fleet.filter((p) => p.type === "llm");
    assert.deepEqual(results.map((r) => r.id).sort(), llms.map((p) => p.modelKey).sort());
    const checks = await checksByModel(home.path);

    for (const profile of llms) {
      await t.step(profile.modelKey, () => {
        const result = results.find((r) => r.id === profile.modelKey)!;
        const truth = profileTruth(profile);
        const precision = Math.max(256, Math.ceil(profile.declaredContext / 100));
        const budget = 2 * Math.ceil(Math.log2(profile.declaredContext / precision)) + 3;
        if (truth.loadable === 0) {
          // Loads at no size: failed in two requests (a load at the cap, then the floor: a
          // check, since the refusal came before any progress), with the reason.
          assert.equal(result.status, "failed");
          assert.equal(result.loadableContext, null);
          assert.equal(result.loads + (checks.get(profile.modelKey) ?? 0), 2);
          return;
        }
        assert.equal(result.status, "tested");
        const { loadableContext: loadable, workingContext: working } = result;
        assert.ok(loadable !== null && working !== null);
        assert.ok(loadable <= truth.loadable, `loadable ${loadable} above ${truth.loadable}`);
        assert.ok(loadable >= truth.loadable - precision, `loadable ${loadable} too low`);
        assert.ok(
          working <= truth.working + RESERVE_TOKENS,
          `working ${working} above ${truth.working}`,
        );
        assert.ok(working >= truth.workingFloor - precision, `working ${working} too low`);
        assert.ok(result.loads <= budget, `${result.loads} loads, budget ${budget}`);
        const honest = truth.loadable === profile.declaredContext &&
          truth.working === profile.declaredContext;
        if (honest) assert.equal(result.loads, 1, "an honest model costs one load");
      });
    }
    await t.step("each search weighs its limit by the models tested before it", async () => {
      for (const [index, result] of results.entries()) {
        const before = results.slice(0, index).filter((r) => r.status === "tested").map((r) => ({
          declared: r.declaredContext,
          loadable: r.loadableContext,
          working: r.workingContext,
          precision: Math.max(256, Math.ceil(r.declaredContext / 100)),
        }));
        const start = (await readLog(home.path, result.id)).find((e) => e.event === "run-start");
        const config = start?.config as { worksAtLimit?: number } | undefined;
        assert.equal(config?.worksAtLimit, worksAtLimitShare(before).share, result.id);
      }
    });
    await t.step("the loads and checks counted are the loads LM Studio saw, nothing stays", () => {
      const stats = emulator.stats();
      const requests = results.reduce((sum, r) => sum + r.loads + (checks.get(r.id) ?? 0), 0);
      assert.equal(stats.loads.length, requests);
      assert.deepEqual(stats.loaded, []);
    });
  });
});

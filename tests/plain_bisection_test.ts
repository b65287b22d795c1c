/**
 * The bench's second reference, the plain correct bisection: a fresh load at every step, the
 * working size judged by a needle that fills the loaded context. It finds both numbers within the
 * precision, and every needle it sends is new and fills the instance just loaded.
 *
 * @module
 */

import assert from "node:assert/strict";
import { plainBisection } from "../scripts/bench/reference_search.ts";
import { PricedProbe, truthProfile } from "../scripts/bench/priced_probe.ts";
import { benchConfig } from "../scripts/bench/regimes.ts";
import { priorGrid } from "../scripts/bench/best_average.ts";
import { loadFleet } from "./support/emulator.ts";
import { FakeProbe } from "./support/fake_probe.ts";

Deno.test("the plain bisection finds both numbers, each needle filling a fresh load", async () => {
  const fleet = (await loadFleet()).filter((p) => p.type === "llm" && p.noRuntime !== true);
  for (const model of fleet.slice(0, 6)) {
    const config = benchConfig(model);
    const grid = priorGrid(config);
    for (const [i, k] of [[grid.length - 1, grid.length - 1], [40, 10], [20, 20], [5, 0]]) {
      const truth = { loadable: grid[Math.min(i!, grid.length - 1)]!, working: grid[k!]! };
      if (truth.working > truth.loadable) continue;
      const result = await plainBisection(
        config,
        new PricedProbe(truthProfile(model, config, truth)),
      );
      const label = `${model.modelKey} ${JSON.stringify(truth)}`;
      const p = config.precision;
      assert.ok(
        result.loadable! <= truth.loadable && result.loadable! >= truth.loadable - p,
        label,
      );
      assert.ok(result.working! <= truth.working + config.reserve, label);
      assert.ok(result.working! >= truth.working - p, label);
      result.attempts.forEach((a, n) => {
        if (a.action !== "needle") return;
        const before = result.attempts[n - 1];
        assert.equal(before?.action, "load", label);
        assert.equal(before?.context, a.context, label);
        assert.equal(a.fresh, true, label);
        assert.equal(a.promptTokens, a.context - config.reserve, label);
      });
    }
  }
});

Deno.test("the plain bisection counts a load reported larger than asked as loaded", async () => {
  // llama.cpp rounds every context up to a multiple of 256: most midpoints come back larger.
  const config = { declared: 65536, minContext: 512, precision: 256, reserve: 64 };
  const probe = new FakeProbe({ loadFailAbove: 58368, needleFailAbove: 640 }, config.reserve);
  const load = probe.load.bind(probe);
  probe.load = (context) => load(Math.ceil(context / 256) * 256);
  const result = await plainBisection(config, probe);
  assert.ok(result.loadable! <= 58368 && result.loadable! > 58368 - 256, `${result.loadable}`);
  assert.ok(result.working! <= 704 && result.working! >= 704 - 256, `${result.working}`);
});

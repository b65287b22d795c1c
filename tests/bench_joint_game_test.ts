/**
 * The joint game of regime b (`scripts/bench/joint_game.ts`): on small grids, never below the
 * two games played apart (of which it is a tighter form), and never above what a plain search it
 * allows costs (bisect L by loads, a full-length needle there, then bisect W by confirming loads).
 *
 * @module
 */

import assert from "node:assert/strict";
import { benchConfig, REGIMES } from "../scripts/bench/regimes.ts";
import {
  bestAverage,
  type GridPrices,
  gridPrices,
  priorGrid,
  type PriorKey,
  priorProfile,
  priorW,
} from "../scripts/bench/best_average.ts";
import { jointGame } from "../scripts/bench/joint_game.ts";
import { loadFleet } from "./support/emulator.ts";

/** Fleet models in regime b on grids of about `cells` sizes. */
async function small(cells: number) {
  const b = REGIMES.find((r) => r.key === "b")!;
  const fleet = (await loadFleet()).filter((p) => p.type === "llm").map(b.apply);
  return fleet.slice(0, 5).map((profile) => {
    const config = benchConfig(profile, Math.ceil(profile.declaredContext / cells));
    return {
      profile,
      config,
      prices: gridPrices(priorProfile(profile), config, priorGrid(config)),
    };
  });
}

/** What the plain search costs when L = i and W = k (see the module doc). */
function plainSearch(prices: GridPrices, i: number, k: number): number {
  const { n, okLoad, refused, pass, fail } = prices;
  let ms = 0;
  let [a, hi] = [-1, n + 1];
  while (hi - a > 1) {
    const t = Math.max(0, Math.floor((a + hi) / 2));
    if (t <= i) [ms, a] = [ms + okLoad[t]!, t];
    else [ms, hi] = [ms + refused[t]!, t];
  }
  // L = i and a real load there: the full-length needle.
  if (k === i) return ms + pass[i]!;
  ms += fail[i]!;
  let [lo, whi, confirmed] = [-1, i, false];
  while (whi - Math.max(lo, 0) > 1) {
    const t = Math.max(Math.max(lo, 0) + 1, Math.floor((Math.max(lo, 0) + whi) / 2));
    if (t <= k) [ms, lo, confirmed] = [ms + okLoad[t]! + pass[t]!, t, true];
    else [ms, whi] = [ms + okLoad[t]! + fail[t]!, t];
  }
  return ms + (confirmed && lo === k ? 0 : okLoad[k]! + pass[k]!);
}

Deno.test("the joint game lies between the two games apart and a plain search", async () => {
  for (const { profile, config, prices } of await small(8)) {
    const n = prices.n;
    for (const prior of ["uniform", "shelf"] as PriorKey[]) {
      const joint = jointGame(prices, (i, k) => priorW(i, k, prior));
      const apart = bestAverage(profile, config, prior).ms;
      let plain = 0;
      for (let i = 0; i <= n; i++) {
        for (let k = 0; k <= i; k++) plain += priorW(i, k, prior) * plainSearch(prices, i, k);
      }
      plain /= n + 1;
      const name = `${profile.modelKey} (${prior})`;
      assert.ok(joint >= apart - 1e-6 * apart, `${name}: joint ${joint} below ${apart}`);
      assert.ok(joint <= plain + 1e-6 * plain, `${name}: joint ${joint} above plain ${plain}`);
      assert.ok(joint < plain, `${name}: the plain search is not the best`);
    }
  }
});

Deno.test("the joint game weighs its prior: scaled weights give the same value", async () => {
  const prices = (await small(6))[0]!.prices;
  const one = jointGame(prices, (i, k) => priorW(i, k, "shelf"));
  const three = jointGame(prices, (i, k) => 3 * priorW(i, k, "shelf"));
  assert.ok(Math.abs(one - three) <= 1e-3 * one);
  assert.throws(() => jointGame({ ...prices, cache: true }, () => 1), /without a prompt cache/);
});

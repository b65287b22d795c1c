/**
 * `show` in a user's words at 80 columns: what a test took and the search's plan without internal
 * names, the attempts one line each (the day given once), nothing wider than the terminal but the
 * paths, which stay whole to be copied.
 *
 * @module
 */

import assert from "node:assert/strict";
import { planInWords } from "../src/cli/show.ts";
import { describePlan } from "../src/search/plan.ts";
import { runCliAgainst, tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";

/** Words of the search's own vocabulary that mean nothing to a user. */
const INTERNAL = /\blean\b|\bclimb\b|\bbisect|\b\d+x\b|not timed|\bjump\b/;

Deno.test("every plan the search can choose reads in a user's words", () => {
  for (const checks of [true, false]) {
    for (const refusals of ["lean", "bisect"] as const) {
      for (const prompts of ["climb", "jump"] as const) {
        const plan = { loadCostRatio: 32, refusals, prompts, promptCache: null, checks };
        const words = planInWords(describePlan(plan));
        assert.doesNotMatch(words, INTERNAL, words);
        assert.notEqual(words, describePlan(plan));
      }
    }
  }
});

Deno.test("show at 80 columns: user words, attempts on one line each, only paths wider", async () => {
  await using home = await tempHome();
  const shelf = [
    testProfile("mistral-nemo-instruct-2407", {
      declaredContext: 131072,
      loadFailAbove: 100_000,
      needleFailAbove: 18_700,
      needleFailMode: "wrong-number",
    }),
  ];
  await withEmulator(shelf, async (emulator) => {
    const cli = (...args: string[]) =>
      runCliAgainst(emulator.url, home.path, args, { COLUMNS: "80" });
    assert.equal((await cli("scan", "-q")).code, 0);
    assert.equal((await cli("test", "nemo", "-q")).code, 0);
    const show = await cli("show", "nemo");
    assert.equal(show.code, 0, show.stderr);
    const lines = show.stdout.trimEnd().split("\n");
    for (const line of lines) {
      assert.ok(line.length < 80 || /^(path|log) /.test(line), `${line.length}: ${line}`);
    }
    assert.match(show.stdout, /^took +a load \S+( \S+)? s, a refusal/m);
    assert.doesNotMatch(show.stdout, INTERNAL);
    const at = lines.findIndex((l) =>
      /^(Latest attempts|Attempts) \(.*\), \d{4}-\d\d-\d\d UTC:$/.test(l)
    );
    assert.ok(at > 0, show.stdout);
    const attempts = lines.slice(at + 1);
    assert.ok(attempts.length >= 5);
    for (const line of attempts) {
      assert.match(line, /^ {2}\d\d:\d\d:\d\dZ {2}\S.*: \S+ \(\d+ ms\)$/);
    }
  });
});

/**
 * A saved search is resumed only as far as the attempt log proves it: a working or loadable size
 * the log has no passing load for (a hand-edited registry, a kill between saving the state and
 * logging the attempt) is not taken on trust; the test searches again, and what it reports was
 * loaded and passed in the log.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { resumePoint, savedSearch } from "../src/engine/resume.ts";
import { searchConfigFor } from "../src/engine/test_options.ts";
import type { AttemptLogEntry } from "../src/registry/attempt_log.ts";
import { initialState } from "../src/search/context_search.ts";
import { tempHome } from "./support/cli.ts";
import { withEmulator } from "./support/emulator.ts";
import { loadAttempt, record } from "./support/records.ts";
import { fleet, lmstrix, readLog, readRegistry } from "./support/reliability.ts";

/** A saved search that looks finished: the working size 30,000 (the truth is 21,111). */
function editedSearch(declared: number) {
  const config = searchConfigFor(record("beta", { declaredContext: declared }), {});
  const state = {
    ...initialState(config),
    phase: "working" as const,
    loadOk: declared,
    loadable: declared,
    saneOk: declared,
    workOk: 30_000,
    workFail: 30_001,
    workFailLoaded: 30_001,
  };
  return { config, saved: savedSearch(state, config, 7) };
}

function entry(extra: Partial<AttemptLogEntry>): AttemptLogEntry {
  return loadAttempt(0, { model: "beta", phase: "working", actualContext: null, ...extra });
}

Deno.test("a saved working size is resumed only when the log shows its load and needle passing", () => {
  const { config, saved } = editedSearch(32_768);
  const at = (attempts: AttemptLogEntry[] | undefined) =>
    resumePoint(
      record("beta", { status: "testing", search: saved, declaredContext: 32_768 }),
      config,
      {
        orphans: [],
        bootTime: undefined,
        attempts,
      },
    );
  const proof = [
    entry({ phase: "loadable", askedContext: 32_768, actualContext: 32_768 }),
    entry({ askedContext: 30_000, actualContext: 30_000 }),
    // A needle's entry names the instance's size; its prompt fills it up to the reserve.
    entry({
      action: "needle",
      askedContext: 30_000,
      promptTokens: 30_000 - config.reserve,
      outcome: "pass",
    }),
  ];
  assert.equal(at(proof).resumed, true, "proved: resumed");
  assert.equal(at(undefined).resumed, true, "no log given (a library caller): resumed");
  const promptOnly = proof.map((e) => e.action === "needle" ? { ...e, askedContext: 32_768 } : e);
  assert.equal(at(promptOnly).resumed, false, "a pass on a larger instance is no proof");
  for (const missing of [0, 1, 2]) {
    const point = at(proof.filter((_, i) => i !== missing));
    assert.equal(point.resumed, false, `without attempt ${missing}: searched again`);
    assert.equal(point.state.workOk, null);
  }
});

Deno.test("an edited saved search is not reported without a load: the rerun searches and confirms", async () => {
  await using home = await tempHome();
  await withEmulator(fleet(), async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const file = join(home.path, "lmstrix", "models.json");
    const data = JSON.parse(await Deno.readTextFile(file));
    data.models.beta.status = "testing";
    data.models.beta.search = editedSearch(data.models.beta.declaredContext).saved;
    await Deno.writeTextFile(file, JSON.stringify(data));

    const run = await lmstrix(emulator, home.path, ["test", "beta"]);
    assert.equal(run.code, 0, run.stderr);
    const beta = (await readRegistry(home.path)).beta!;
    assert.ok(beta.workingContext! <= 21_111 + 64, `working ${beta.workingContext}`);
    // The reported size was loaded and passed a needle in this home's log.
    const log = await readLog(home.path, "beta");
    assert.ok(
      log.some((e) =>
        e.action === "load" && e.askedContext === beta.workingContext && e.outcome === "loaded"
      ),
      "a load at the working size",
    );
  });
});

/**
 * The one rule for when stored results change, through the CLI: a tested model keeps its numbers
 * unless `--force`, named or with `--all`; `--all` leaves out failed models unless
 * `--retry-failed`; a forced run cut short resumes when run again. Each case counts the loads
 * LM Studio saw, so a rule that is not kept shows as loads.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";
import {
  fleet,
  lmstrix,
  loadInFlight,
  readLog,
  readRegistry,
  spawnCli,
  waitFor,
} from "./support/reliability.ts";

const loadsOf = (loads: { modelKey: string }[], id: string) =>
  loads.filter((l) => l.modelKey === id).length;

Deno.test("a tested model keeps its numbers unless --force, named or with --all", async () => {
  await using home = await tempHome();
  await withEmulator(fleet(), async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    assert.equal((await lmstrix(emulator, home.path, ["test", "beta"])).code, 0);
    const before = (await readRegistry(home.path)).beta!;
    // The log opens the run with a separator, and each needle line says what it asked for.
    const log = await readLog(home.path, "beta");
    assert.equal(log[0]?.event, "run-start");
    assert.equal(log[0]?.resumed, false);
    const needles = log.filter((e) => e.action === "needle");
    assert.ok(
      needles.some((e) => e.outcome === "fail") && needles.some((e) => e.outcome === "pass"),
    );
    for (const e of needles) {
      assert.match(String(e.expected), /^\d{7}$/);
      assert.equal(String(e.output).includes(String(e.expected)), e.outcome === "pass");
    }
    emulator.reset();

    // The case: a coarser precision would have replaced a good number with a worse one.
    const named = await lmstrix(emulator, home.path, ["test", "beta", "--precision", "30000"]);
    assert.equal(named.code, 0, named.stderr);
    assert.equal(loadsOf(emulator.stats().loads, "beta"), 0, "no load for a tested model");
    const kept = (await readRegistry(home.path)).beta!;
    assert.equal(kept.workingContext, before.workingContext);
    assert.equal(kept.loadableContext, before.loadableContext);
    // Its numbers, as kept, then how to test it again; the summary counts it.
    const working = kept.workingContext!.toLocaleString("en-US");
    assert.match(
      named.stdout,
      new RegExp(`^beta: kept, working ${working} of 32,768 declared \\([\\d.]+% less\\)$`, "m"),
    );
    assert.match(named.stdout, /^ {2}loadable [\d,]+; from an earlier test$/m);
    assert.match(named.stdout, /Kept the numbers of 1 model tested already: beta \(--force/);
    assert.match(named.stderr, /^Summary: tested 0, failed 0, kept 1, skipped 0, took [\d.]+ s$/m);

    const json = await lmstrix(emulator, home.path, ["test", "beta", "--json"]);
    const document = JSON.parse(json.stdout);
    assert.deepEqual(document.results, [{
      id: "beta",
      declaredContext: 32768,
      loadableContext: kept.loadableContext,
      workingContext: kept.workingContext,
      reductionPercent: Math.round((1 - kept.workingContext! / 32768) * 1000) / 10,
      status: "tested",
      loads: 0,
      promptTokens: 0,
      error: null,
      kept: true,
    }]);
    assert.equal(document.summary.kept, 1);
    assert.equal(document.summary.tested, 0);
    assert.deepEqual(document.skipped.map((s: { id: string }) => s.id), ["beta"]);

    const forced = await lmstrix(emulator, home.path, ["test", "beta", "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok(loadsOf(emulator.stats().loads, "beta") > 0, "--force tests it again");
  });
});

Deno.test("test --all leaves out failed models unless --retry-failed, and says so", async () => {
  await using home = await tempHome();
  const profiles = [
    ...fleet(),
    testProfile("dud", { sizeBytes: 500_000_000, declaredContext: 16384, loadFailAbove: 1000 }),
  ];
  await withEmulator(profiles, async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const first = await lmstrix(emulator, home.path, ["test", "--all"]);
    assert.equal(first.code, 1, first.stderr);
    // The run ends with a line that names the model it could not test.
    assert.match(
      first.stderr,
      /^Summary: tested 2, failed 1, kept 0, skipped 0, took [\d.]+ s; failed: dud$/m,
    );
    assert.equal((await readRegistry(home.path)).dud?.status, "failed");
    emulator.reset();

    const nightly = await lmstrix(emulator, home.path, ["test", "--all"]);
    assert.equal(nightly.code, 0, nightly.stderr);
    assert.equal(emulator.stats().loads.length, 0, "a failed model costs no load every night");
    assert.match(
      nightly.stdout,
      /Skipped 1 model whose test failed and whose file did not change: dud \(--retry-failed/,
    );
    assert.match(
      nightly.stderr,
      /^Summary: tested 0, failed 0, kept 2, skipped 1, took [\d.]+ s$/m,
    );
    const json = await lmstrix(emulator, home.path, ["test", "--all", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const { summary } = JSON.parse(json.stdout);
    assert.deepEqual({ ...summary, seconds: 0 }, {
      tested: 0,
      failed: 0,
      kept: 2,
      skipped: 1,
      seconds: 0,
    });

    const retried = await lmstrix(emulator, home.path, ["test", "--all", "--retry-failed"]);
    assert.equal(retried.code, 1, retried.stderr);
    assert.ok(loadsOf(emulator.stats().loads, "dud") > 0, "--retry-failed tests it again");
    assert.equal(loadsOf(emulator.stats().loads, "alpha"), 0, "tested ones keep their numbers");
  });
});

Deno.test("a forced run cut short resumes when run again: done models are not tested again", async () => {
  await using home = await tempHome();
  await withEmulator(fleet({ beta: { realDelayMs: { load: 300 } } }), async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    assert.equal((await lmstrix(emulator, home.path, ["test", "--all"])).code, 0);
    const cleanBeta = loadsOf(emulator.stats().loads, "beta");
    emulator.reset();

    const forced = spawnCli(emulator, home.path, ["test", "--all", "--force"]);
    await waitFor("beta's second load in flight (alpha done)", () => {
      const s = emulator.stats();
      return loadsOf(s.loads, "beta") >= 2 && loadInFlight(s);
    });
    forced.child.kill("SIGINT");
    const stopped = await forced.done;
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.match(stopped.stderr, /run the same command again to resume/);
    const alphaLoads = loadsOf(emulator.stats().loads, "alpha");
    assert.ok(alphaLoads > 0, "the forced run retested alpha");

    const again = await lmstrix(emulator, home.path, ["test", "--all", "--force"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(loadsOf(emulator.stats().loads, "alpha"), alphaLoads, "alpha is not retested");
    assert.match(again.stderr, /beta \(resuming\)/);
    assert.match(again.stdout, /Resumed a forced run: 1 model already tested again by it/);
    const models = await readRegistry(home.path);
    assert.equal(models.beta?.status, "tested");
    const betaAll = loadsOf(emulator.stats().loads, "beta");
    assert.ok(betaAll <= cleanBeta + 1, `beta: ${betaAll} loads in all, ${cleanBeta} undisturbed`);
    const marks = Object.values(models).filter((m) => "retestPending" in m);
    assert.deepEqual(marks, [], "the finished forced run leaves no marks");
  });
});

/**
 * LM Studio misbehaving as a whole, or another client interfering, mid-run: someone else unloads
 * the model under test, the server restarts, the server stops answering. The run goes on when it
 * can and stops with exit 3 (progress saved, no model marked failed) when it cannot.
 *
 * @module
 */

import assert from "node:assert/strict";
import { LMStudioClient } from "@lmstudio/sdk";
import { tempHome } from "./support/cli.ts";
import { quietLogger, withEmulator } from "./support/emulator.ts";
import { startProxy } from "./support/proxy.ts";
import {
  assertNoStackTrace,
  assertSameNumbers,
  cleanRun,
  fleet,
  lmstrix,
  loadInFlight,
  predictionInFlight,
  readRegistry,
  spawnCli,
  waitFor,
} from "./support/reliability.ts";

Deno.test("a model unloaded by someone else mid-test is loaded again once and the test goes on", async () => {
  const clean = await cleanRun();
  await using home = await tempHome();
  await withEmulator(fleet({ alpha: { realDelayMs: { predict: 60 } } }), async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const run = spawnCli(emulator, home.path, ["test", "--all"]);
    // A needle probe of the working phase: more follow on the same instance.
    await waitFor("the ninth prediction in flight", () => {
      const s = emulator.stats();
      return s.predictions.length >= 9 && predictionInFlight(s);
    });
    // `lms unload`, or another program: a second client unloads LMStrix's instance.
    const [instance] = emulator.stats().loaded;
    assert.ok(instance, "LMStrix has its instance loaded");
    const other = new LMStudioClient({ baseUrl: emulator.url, logger: quietLogger });
    try {
      await other.llm.unload(instance.identifier);
    } finally {
      await other[Symbol.asyncDispose]();
    }
    const result = await run.done;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /alpha: its instance was unloaded by another client .*; loading/);
    assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha", "beta"]);
    assert.deepEqual(emulator.stats().loaded, []);
  });
});

Deno.test("LM Studio restarting mid-run: the run waits for it and goes on", async () => {
  const clean = await cleanRun();
  await using home = await tempHome();
  await withEmulator(fleet({ alpha: { realDelayMs: { load: 200 } } }), async (emulator) => {
    await using proxy = startProxy(emulator.port);
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const run = spawnCli(emulator, home.path, ["test", "--all"], {
      LMSTRIX_SERVER: proxy.url,
      LMSTRIX_BACKOFF_MS: "300",
    });
    await waitFor("the third load in flight", () => {
      const s = emulator.stats();
      return s.loads.length >= 3 && loadInFlight(s);
    });
    await proxy.restart(1_300); // as LM Studio restarting: connections drop, the port refuses
    const result = await run.done;
    assert.equal(result.code, 0, result.stderr);
    // In a user's words: what failed, and that it is tried again; never the SDK's call names.
    assert.match(
      result.stderr,
      /: (loading the model|a load check|a prediction) failed \(.*\); trying again \(retry 1\)/,
    );
    assert.doesNotMatch(result.stderr, /: (load|check|complete|countTokens) failed\b/);
    assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha", "beta"]);
  });
});

Deno.test("LM Studio that stops answering ends the run with exit 3, progress saved, nothing failed", async () => {
  await using home = await tempHome();
  await withEmulator(fleet(), async (emulator) => {
    await using proxy = startProxy(emulator.port);
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const run = spawnCli(emulator, home.path, ["test", "--all", "--timeout", "0.3"], {
      LMSTRIX_SERVER: proxy.url,
    });
    await waitFor("the fourth load", () => emulator.stats().loads.length >= 4);
    proxy.freeze();
    const frozenAt = performance.now();
    const result = await run.done;
    const took = performance.now() - frozenAt;
    assert.equal(result.code, 3, result.stderr);
    assert.ok(took < 10_000, `gave up after ${Math.round(took)} ms`);
    assert.match(
      result.stderr,
      /^error: LM Studio at "ws:\/\/127\.0\.0\.1:\d+" stopped answering/m,
    );
    assertNoStackTrace(result.stderr);
    const saved = await readRegistry(home.path);
    for (const id of ["alpha", "beta"]) {
      assert.notEqual(saved[id]?.status, "failed", `${id} is not marked failed`);
      assert.equal(saved[id]?.error, null);
    }
    assert.ok(saved.alpha?.search !== undefined, "the search is saved");
    proxy.thaw();
    // LM Studio answers again: the rerun resumes and finishes.
    const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stderr, /alpha \(resuming\)/);
  });
});

Deno.test("scan against a server that never answers exits 3 and says so", async () => {
  await using home = await tempHome();
  await withEmulator(fleet(), async (emulator) => {
    await using proxy = startProxy(emulator.port);
    proxy.freeze();
    const run = await lmstrix(emulator, home.path, ["scan"], {
      LMSTRIX_SERVER: proxy.url,
      LMSTRIX_TIMEOUT: "0.5",
    });
    assert.equal(run.code, 3, run.stderr);
    assert.match(run.stderr, /did not answer "listDownloadedModels" within 0\.5 s/);
    assertNoStackTrace(run.stderr);
  });
});

Deno.test("scan of a model list with one unreadable entry exits 3 at once and names the model", async () => {
  await using home = await tempHome();
  await withEmulator(fleet(), async (emulator) => {
    emulator.injectFaults({ malformNextListing: true });
    const started = Date.now();
    // A deadline far above the run: the failure must come from the dropped reply, not the clock.
    const run = await lmstrix(emulator, home.path, ["scan"], { LMSTRIX_TIMEOUT: "60" });
    assert.equal(run.code, 3, run.stderr);
    assert.ok(Date.now() - started < 30_000, "it did not wait for the deadline");
    const last = fleet().at(-1)!.modelKey;
    assert.match(
      run.stderr,
      new RegExp(`reply could not be read: model "${last}", sizeBytes: Expected number`),
    );
    assert.match(run.stderr, /lms ls --json/);
    assertNoStackTrace(run.stderr);
  });
});

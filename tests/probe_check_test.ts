/**
 * Checks through the real adapter and SDK against the emulator: a load that LM Studio starts is
 * cancelled at its first progress report, so that the guardrail's answer costs about a refusal;
 * nothing stays loaded, whatever the timing, and an interrupt stays an interrupt. Also the
 * `early` mark of a refused load: before any progress (the guardrail) or after it (the engine).
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Emulator } from "../scripts/emulator/server.ts";
import { loadMs, TIMING } from "../scripts/emulator/timing.ts";
import { connectLmStudio, type LmStudio } from "../src/lmstudio/client.ts";
import { LmStudioCallError } from "../src/lmstudio/failures.ts";
import { LmStudioProbe } from "../src/probe/lmstudio_probe.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";

const sdkTest = { sanitizeOps: false, sanitizeResources: false };
// Far more than the few ms a cancel takes to come back, so that a busy machine cannot make
// the test lose the race (the loads not cancelled wait it out, a few in all).
const hold = { cancelHoldMs: 250 };

const guarded = testProfile("guarded", { loadFailAbove: 8192 });
const engine = testProfile("engine-fails", { loadFailAbove: 8192, refusal: "engine" });
const slow = testProfile("slow-guarded", { loadFailAbove: 8192, realDelayMs: { load: 2000 } });

/** Runs `fn` with the adapter and a probe of `modelKey` timed on the emulator's virtual clock. */
async function withProbe(
  emulator: Emulator,
  modelKey: string,
  fn: (probe: LmStudioProbe, lms: LmStudio) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const lms = await connectLmStudio(emulator.url);
  const probe = new LmStudioProbe(lms, modelKey, {
    runId: "check",
    now: () => emulator.now(),
    ...(signal ? { signal } : {}),
  });
  try {
    await fn(probe, lms);
  } finally {
    await lms.close();
  }
}

Deno.test("a check tells the guardrail's answer for a fraction of a load", sdkTest, async (t) => {
  await withEmulator([guarded], async (emulator) => {
    await withProbe(emulator, "guarded", async (probe, lms) => {
      await t.step("below the limit it started, and nothing stays loaded", async () => {
        const outcome = await probe.check(8192);
        assert.equal(outcome.kind, "started");
        assert.equal(outcome.seconds, (TIMING.firstProgressMs + TIMING.cancelMs) / 1000);
        assert.deepEqual(await lms.listLoaded(), []);
        assert.equal(emulator.stats().loads.at(-1)?.error, "cancelled");
        assert.equal(probe.last.durationMs, TIMING.firstProgressMs + TIMING.cancelMs);
      });
      await t.step("above it LM Studio refused", async () => {
        const outcome = await probe.check(16384);
        assert.equal(outcome.kind, "refused");
        assert.match(outcome.kind === "refused" ? outcome.message : "", /insufficient system/);
        assert.equal(outcome.seconds, TIMING.refusedLoadMs / 1000);
        assert.deepEqual(await lms.listLoaded(), []);
      });
      await t.step("a load costs many times more than a check", async () => {
        const loaded = await probe.load(8192);
        assert.equal(loaded.kind, "loaded");
        assert.equal(loaded.seconds, loadMs(guarded, 8192) / 1000);
        assert.ok(loaded.seconds! > 5 * (TIMING.firstProgressMs + TIMING.cancelMs) / 1000);
      });
      await t.step("a check unloads the instance loaded before it, like a load", async () => {
        assert.equal((await lms.listLoaded()).length, 1);
        assert.equal((await probe.check(4096)).kind, "started");
        assert.deepEqual(await lms.listLoaded(), []);
        assert.equal(probe.loaded, undefined);
      });
      await t.step("checks are counted apart from loads, each with its own identifier", () => {
        assert.deepEqual([probe.checks, probe.loads], [3, 1]);
        const identifiers = emulator.stats().loads.map((load) => load.identifier);
        assert.equal(new Set(identifiers).size, 4, `${identifiers}`);
      });
    });
  }, hold);
});

Deno.test("a check whose cancel comes too late unloads what loaded", sdkTest, async () => {
  // No cancel hold: the emulator finishes the load before the cancel arrives (a real race).
  await withEmulator([guarded], async (emulator) => {
    await withProbe(emulator, "guarded", async (probe, lms) => {
      assert.deepEqual(await probe.check(8192), {
        kind: "started",
        completed: true,
        seconds: (loadMs(guarded, 8192) + TIMING.unloadMs) / 1000,
      });
      assert.deepEqual(await lms.listLoaded(), []);
      const stats = emulator.stats();
      assert.equal(stats.loads.at(-1)?.ok, true, "the load did finish");
      assert.equal(stats.unloads, 1);
    });
  });
});

Deno.test("a refused load says whether it came before any progress", sdkTest, async () => {
  await withEmulator([guarded, engine], async (emulator) => {
    await withProbe(emulator, "guarded", async (probe) => {
      const outcome = await probe.load(16384);
      assert.equal(outcome.kind, "refused");
      assert.equal(outcome.kind === "refused" && outcome.early, true);
    });
    await withProbe(emulator, "engine-fails", async (probe, lms) => {
      const outcome = await probe.load(16384);
      assert.equal(outcome.kind, "refused");
      assert.equal(outcome.kind === "refused" && outcome.early, false);
      // The engine fails after the start: a check cannot see it, it says started.
      assert.equal((await probe.check(16384)).kind, "started");
      assert.deepEqual(await lms.listLoaded(), []);
    });
  }, hold);
});

Deno.test("an interrupt during a check is an interrupt and leaves nothing", sdkTest, async () => {
  await withEmulator([slow], async (emulator) => {
    const interrupt = new AbortController();
    await withProbe(emulator, "slow-guarded", async (probe, lms) => {
      // Ctrl-C once the emulator has the load, before its first progress (after 100 ms).
      const watch = setInterval(() => {
        if (emulator.stats().loads.length > 0) interrupt.abort("SIGINT");
      }, 2);
      try {
        await assert.rejects(probe.check(8192), (error: unknown) => {
          assert.ok(error instanceof LmStudioCallError, String(error));
          assert.equal(error.kind, "aborted");
          return true;
        });
      } finally {
        clearInterval(watch);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(await lms.listLoaded(), []);
      assert.equal(emulator.stats().loads.at(-1)?.error, "cancelled");
      assert.equal(probe.checks, 1);
    }, interrupt.signal);
  });
});

Deno.test("a server ignoring the cancel: checks say so and leave nothing", sdkTest, async () => {
  const stubborn = testProfile("stubborn", { loadFailAbove: 8192, cancelIgnored: true });
  await withEmulator([stubborn, guarded], async (emulator) => {
    await withProbe(emulator, "stubborn", async (probe, lms) => {
      const first = await probe.check(8192);
      assert.equal(first.kind, "started");
      // The instance shows up once the server has the cancel: at the latest, before the next
      // request, which finds it, unloads it and says so.
      const second = await probe.check(4096);
      assert.equal(second.kind === "started" && second.completed, true);
      const loaded = await probe.load(2048);
      assert.equal(loaded.kind, "loaded");
      assert.deepEqual((await lms.listLoaded()).map((i) => i.contextLength), [2048]);
      assert.ok(emulator.stats().loads.every((load) => load.ok), "the server loaded them all");
      await probe.release();
      assert.deepEqual(await lms.listLoaded(), []);
    });
    await withProbe(emulator, "guarded", async (probe) => {
      const outcome = await probe.check(8192);
      assert.equal(
        outcome.kind === "started" && outcome.completed,
        undefined,
        "a cancel that took",
      );
    });
  }, hold);
});

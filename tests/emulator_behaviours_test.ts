/**
 * The real LM Studio behaviours the emulator learned from the shared notes (refusal kinds and
 * their costs, a missing runtime, auto-fit raising a request, an engine crash that takes the
 * instance, a model without prompt cache, `timeToFirstTokenSec` from the virtual clock, paced
 * time), each driven through the real `@lmstudio/sdk` over a socket.
 *
 * @module
 */

import assert from "node:assert/strict";
import { LMStudioClient } from "@lmstudio/sdk";
import { type Emulator, startEmulator } from "../scripts/emulator/server.ts";
import { profileTruth } from "../scripts/emulator/profile.ts";
import { loadMs, prefillMs, TIMING } from "../scripts/emulator/timing.ts";
import { classifyFailure, isLoadRefusal } from "../src/lmstudio/failures.ts";
import {
  needlePrompt,
  plainErrorText,
  quietLogger,
  testProfile,
  withEmulator,
  within,
} from "./support/emulator.ts";

const sdkTest = { sanitizeOps: false, sanitizeResources: false };
const QUICK = 5000;

function client(emulator: Emulator): LMStudioClient {
  return new LMStudioClient({ baseUrl: emulator.url, logger: quietLogger });
}

/** Loads `key` at `contextLength` and returns the failure text, or fails the test if it loads. */
async function refusal(lms: LMStudioClient, key: string, contextLength: number): Promise<string> {
  let text = "";
  await assert.rejects(
    within(lms.llm.load(key, { config: { contextLength }, verbose: false }), QUICK),
    (error: unknown) => {
      text = plainErrorText(error);
      assert.ok(isLoadRefusal(classifyFailure(error)), `not read as a refusal: ${text}`);
      return true;
    },
  );
  return text;
}

const guardrail = testProfile("guarded", { loadFailAbove: 8192 });
const engine = testProfile("engine-fails", { loadFailAbove: 8192, refusal: "engine" });
const exitCode = testProfile("exit-code", { loadFailAbove: 8192, refusal: "exit-code" });
const nowhere = testProfile("no-runtime", { noRuntime: true });
const raised = testProfile("raised", { fitUpTo: 12288 });
const crashing = testProfile("crashing", { crashAbove: 6000 });
const uncached = testProfile("uncached", { promptCache: false });
const shrinking = testProfile("shrinking", {
  loadFailAbove: 16384,
  shrinks: { afterLoads: 1, loadFailAbove: 8192 },
});

Deno.test("refused loads say what LM Studio says and cost what it costs", sdkTest, async (t) => {
  await withEmulator([guardrail, engine, exitCode, nowhere], async (emulator) => {
    const lms = client(emulator);
    const lastLoadMs = () => emulator.stats().loads.at(-1)?.virtualMs;
    await t.step("a guardrail refusal is quick", async () => {
      assert.match(await refusal(lms, "guarded", 16384), /insufficient system resources/);
      assert.equal(lastLoadMs(), TIMING.refusedLoadMs);
    });
    await t.step("an engine failure costs a full load at the asked size", async () => {
      const text = await refusal(lms, "engine-fails", 16384);
      assert.match(text, /Failed to load model/);
      assert.match(text, /Failed to initialize the context: failed to allocate compute pp buffers/);
      assert.equal(lastLoadMs(), loadMs(engine, 16384));
    });
    await t.step("an exit code with no 'failed to load' words costs a full load too", async () => {
      const text = await refusal(lms, "exit-code", 16384);
      assert.match(
        text,
        /\(Exit code: 133\)\. Please check settings and try loading the model again\./,
      );
      assert.doesNotMatch(text, /failed to load/i);
      assert.equal(lastLoadMs(), loadMs(exitCode, 16384));
    });
    await t.step("below the limit each of them loads", async () => {
      for (const key of ["guarded", "engine-fails", "exit-code"]) {
        const model = await within(
          lms.llm.load(key, { config: { contextLength: 8192 }, verbose: false }),
          QUICK,
        );
        assert.equal(await within(model.getContextLength(), QUICK), 8192);
        await within(model.unload(), QUICK);
      }
    });
    await t.step("a missing runtime fails at every size", async () => {
      for (const size of [16384, 4096, 512]) {
        assert.match(await refusal(lms, "no-runtime", size), /No LM Runtime found/);
      }
      assert.deepEqual(profileTruth(nowhere), { loadable: 0, working: 0, workingFloor: 0 });
    });
    await lms[Symbol.asyncDispose]();
  });
});

Deno.test("auto-fit raises a small request and reports the larger context", sdkTest, async () => {
  await withEmulator([raised], async (emulator) => {
    const lms = client(emulator);
    const small = await within(
      lms.llm.load("raised", { config: { contextLength: 4096 }, verbose: false }),
      QUICK,
    );
    assert.equal(await within(small.getContextLength(), QUICK), 12288);
    const large = await within(
      lms.llm.load("raised", { config: { contextLength: 16384 }, verbose: false }),
      QUICK,
    );
    assert.equal(await within(large.getContextLength(), QUICK), 16384);
    const loads = emulator.stats().loads;
    assert.deepEqual(loads.map((l) => [l.askedContext, l.loadedContext]), [
      [4096, 12288],
      [16384, 16384],
    ]);
    assert.equal(profileTruth(raised).loadable, 16384, "raised loads count as loaded");
    await lms[Symbol.asyncDispose]();
  });
});

Deno.test(
  "a prompt above crashAbove kills the engine and the instance with it",
  sdkTest,
  async () => {
    await withEmulator([crashing], async (emulator) => {
      const lms = client(emulator);
      const model = await within(
        lms.llm.load("crashing", {
          identifier: "c",
          config: { contextLength: 8192 },
          verbose: false,
        }),
        QUICK,
      );
      const below = needlePrompt({ key: "calm-lake", value: "1234567", tokens: 5000 });
      assert.equal(
        (await within(model.complete(below, { maxTokens: 16, temperature: 0 }), QUICK)).content,
        " 1234567.",
      );
      const above = needlePrompt({ key: "calm-lake", value: "1234567", tokens: 7000 });
      await assert.rejects(
        within(model.complete(above, { maxTokens: 16, temperature: 0 }), QUICK),
        (error: unknown) => {
          const text = plainErrorText(error);
          assert.match(text, /The model has crashed without additional information\. \(Exit code/);
          assert.equal(classifyFailure(error), "crashed");
          return true;
        },
      );
      assert.deepEqual(await within(lms.llm.listLoaded(), QUICK), []);
      assert.equal(profileTruth(crashing).working, 6000);
      await lms[Symbol.asyncDispose]();
    });
  },
);

Deno.test(
  "shrinks: a size that loaded once fails every later load, after progress",
  sdkTest,
  async (t) => {
    await withEmulator([shrinking], async (emulator) => {
      const lms = client(emulator);
      await t.step("the first load above the shrunk size loads", async () => {
        const model = await within(
          lms.llm.load("shrinking", { config: { contextLength: 12288 }, verbose: false }),
          QUICK,
        );
        assert.equal(await within(model.getContextLength(), QUICK), 12288);
        await within(model.unload(), QUICK);
      });
      await t.step(
        "the same size fails from then on, every time, as llama.cpp's allocation",
        async () => {
          for (let i = 0; i < 3; i++) {
            assert.match(await refusal(lms, "shrinking", 12288), /failed to allocate/);
            assert.match(await refusal(lms, "shrinking", 10000), /failed to allocate/);
          }
        },
      );
      await t.step(
        "below the shrunk size it still loads; the truth is what loads now",
        async () => {
          const model = await within(
            lms.llm.load("shrinking", { config: { contextLength: 8192 }, verbose: false }),
            QUICK,
          );
          await within(model.unload(), QUICK);
          assert.equal(profileTruth(shrinking).loadable, 8192);
        },
      );
      await lms[Symbol.asyncDispose]();
    });
  },
);

Deno.test("timeToFirstTokenSec shows whether the prompt cache works", sdkTest, async () => {
  await withEmulator([testProfile("cached"), uncached], async (emulator) => {
    const lms = client(emulator);
    const prompt = needlePrompt({ key: "tall-tree", value: "7654321", tokens: 6000 });
    const longer = prompt.replace(
      "The special magic number",
      " so so so. The special magic number",
    );
    const ttft: Record<string, number[]> = {};
    for (const key of ["cached", "uncached"]) {
      const model = await within(
        lms.llm.load(key, { config: { contextLength: 8192 }, verbose: false }),
        QUICK,
      );
      ttft[key] = [];
      for (const text of [prompt, longer]) {
        const result = await within(model.complete(text, { maxTokens: 16 }), QUICK);
        ttft[key].push(result.stats.timeToFirstTokenSec ?? NaN);
      }
      await within(model.unload(), QUICK);
    }
    const cold = (TIMING.predictOverheadMs + prefillMs(uncached, 0, 6000)) / 1000;
    assert.ok(Math.abs(ttft.cached![0]! - cold) < 0.002, `cold ${ttft.cached![0]} vs ${cold}`);
    assert.ok(ttft.cached![1]! < cold / 4, "the cache makes the longer prompt cheap");
    assert.ok(ttft.uncached![1]! > cold, "without cache the longer prompt costs it all again");
    const prefilled = emulator.stats().predictions.map((p) => p.prefilledTokens);
    assert.equal(prefilled[2], 6000);
    assert.ok(prefilled[3]! > 6000);
    await lms[Symbol.asyncDispose]();
  });
});

Deno.test("a paced emulator sleeps a scaled share of its virtual time", sdkTest, async () => {
  const profile = testProfile("paced");
  const emulator = await (await import("../scripts/emulator/server.ts")).startEmulator({
    profiles: [profile],
    timeScale: 0.02,
  });
  try {
    const lms = client(emulator);
    const start = performance.now();
    const model = await within(
      lms.llm.load("paced", { config: { contextLength: 4096 }, verbose: false }),
      QUICK,
    );
    const elapsed = performance.now() - start;
    const virtual = loadMs(profile, 4096);
    assert.equal(emulator.now(), virtual);
    assert.ok(elapsed >= virtual * 0.02, `${elapsed} ms real for ${virtual} virtual`);
    await within(model.unload(), QUICK);
    await lms[Symbol.asyncDispose]();
  } finally {
    await emulator.close();
  }
});

/** Loads `key` at `contextLength`, recording each progress report; cancels at the first one. */
async function loadWatched(
  lms: LMStudioClient,
  key: string,
  contextLength: number,
  options: { cancelAtProgress?: boolean } = {},
): Promise<{ progress: number[]; error: string | null }> {
  const progress: number[] = [];
  const controller = new AbortController();
  try {
    const model = await within(
      lms.llm.load(key, {
        config: { contextLength },
        verbose: false,
        signal: controller.signal,
        onProgress: (value) => {
          progress.push(value);
          if (options.cancelAtProgress === true && value > 0) {
            controller.abort(new Error("check done"));
          }
        },
      }),
      QUICK,
    );
    await within(model.unload(), QUICK);
    return { progress, error: null };
  } catch (error) {
    return { progress, error: plainErrorText(error) };
  }
}

/** Waits until the emulator's latest load record has settled (the cancel reached it). */
async function settledLoad(emulator: Emulator) {
  for (let i = 0; i < 100; i++) {
    const last = emulator.stats().loads.at(-1);
    if (last !== undefined && (last.ok || last.error !== null)) return last;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("the load never settled");
}

Deno.test(
  "a load reports progress only once the guardrail let it start, and a cancel then is cheap",
  sdkTest,
  async (t) => {
    // Far more than the few ms a cancel takes to come back, so that a busy machine cannot make
    // the test lose the race (the loads not cancelled wait it out, a few in all).
    const hold = { cancelHoldMs: 250 };
    await withEmulator([guardrail, engine, exitCode, nowhere], async (emulator) => {
      const lms = client(emulator);
      await t.step("a guardrail refusal comes before any progress", async () => {
        const { progress, error } = await loadWatched(lms, "guarded", 16384);
        assert.match(error ?? "", /insufficient system resources/);
        assert.deepEqual(progress, []);
      });
      await t.step("so does a missing runtime", async () => {
        const { progress, error } = await loadWatched(lms, "no-runtime", 4096);
        assert.match(error ?? "", /No LM Runtime found/);
        assert.deepEqual(progress, []);
      });
      await t.step("an engine failure comes after progress, at a full load's cost", async () => {
        for (const key of ["engine-fails", "exit-code"]) {
          const { progress, error } = await loadWatched(lms, key, 16384);
          assert.match(error ?? "", /Failed to load model|Exit code: 133/);
          assert.ok(progress.length > 0 && progress[0]! > 0, `${key}: ${progress}`);
          assert.equal(emulator.stats().loads.at(-1)?.virtualMs, loadMs(engine, 16384));
        }
      });
      await t.step("a load cancelled at its first progress loads nothing", async () => {
        const before = emulator.now();
        const { progress, error } = await loadWatched(lms, "guarded", 8192, {
          cancelAtProgress: true,
        });
        assert.match(error ?? "", /check done/);
        assert.equal(progress.length, 1);
        const record = await settledLoad(emulator);
        assert.equal(record.error, "cancelled");
        assert.equal(record.ok, false);
        assert.equal(record.virtualMs, TIMING.firstProgressMs + TIMING.cancelMs);
        assert.equal(emulator.now() - before, TIMING.firstProgressMs + TIMING.cancelMs);
        assert.deepEqual(await within(lms.llm.listLoaded(), QUICK), []);
      });
      await t.step("a load not cancelled streams progress up to 1 and costs a load", async () => {
        const before = emulator.now();
        const { progress, error } = await loadWatched(lms, "guarded", 8192);
        assert.equal(error, null);
        assert.equal(progress.at(-1), 1);
        assert.ok(progress[0]! > 0 && progress[0]! < 1);
        const record = emulator.stats().loads.at(-1);
        assert.equal(record?.ok, true);
        assert.equal(record?.virtualMs, loadMs(guardrail, 8192));
        // The unload is the only other cost.
        assert.equal(emulator.now() - before, loadMs(guardrail, 8192) + TIMING.unloadMs);
      });
      await lms[Symbol.asyncDispose]();
    }, hold);
  },
);

Deno.test("a cancel at the first progress costs the same when paced", sdkTest, async () => {
  // Paced: the load's own waits give the cancel time, no hold needed.
  const emulator = await startEmulator({ profiles: [guardrail], timeScale: 0.02 });
  try {
    const lms = client(emulator);
    const { error } = await loadWatched(lms, "guarded", 8192, { cancelAtProgress: true });
    assert.match(error ?? "", /check done/);
    const record = await settledLoad(emulator);
    assert.equal(record.error, "cancelled");
    assert.equal(record.virtualMs, TIMING.firstProgressMs + TIMING.cancelMs);
    assert.equal(emulator.now(), TIMING.firstProgressMs + TIMING.cancelMs);
    assert.deepEqual(await within(lms.llm.listLoaded(), QUICK), []);
    await lms[Symbol.asyncDispose]();
  } finally {
    await emulator.close();
  }
});

Deno.test("a cancel that comes after the load finished leaves it loaded", sdkTest, async () => {
  // No hold (the default): the load is over before the cancel can arrive, as in a real race.
  const emulator = await startEmulator({ profiles: [guardrail] });
  try {
    const lms = client(emulator);
    const { error } = await loadWatched(lms, "guarded", 8192, { cancelAtProgress: true });
    assert.match(error ?? "", /check done/);
    const record = await settledLoad(emulator);
    assert.equal(record.ok, true);
    assert.equal(record.virtualMs, loadMs(guardrail, 8192));
    const loaded = await within(lms.llm.listLoaded(), QUICK);
    assert.equal(loaded.length, 1);
    await lms[Symbol.asyncDispose]();
  } finally {
    await emulator.close();
  }
});

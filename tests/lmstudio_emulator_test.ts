/**
 * Tests of the LM Studio emulator, driving the real `@lmstudio/sdk` over a real socket, plus the
 * shared profile logic (truth, validation, tokenizer, answers, timing).
 *
 * Sizes that exercise a demo-fleet model are derived from that model's profile (its limits and
 * profileTruth), so the tests check behaviour relative to the limits whatever the numbers are.
 *
 * Minimal permissions: deno test --allow-net=127.0.0.1 --allow-read --allow-env --allow-run=deno
 * tests/lmstudio_emulator_test.ts (`ws` reads the environment; the CLI test spawns deno).
 *
 * @module
 */

import assert from "node:assert/strict";
import { LMStudioClient } from "@lmstudio/sdk";
import type { Emulator } from "../scripts/emulator/server.ts";
import type { EmulatorStats } from "../scripts/emulator/stats.ts";
import { emulatedAnswer, failsInNoisyBand } from "../scripts/emulator/answers.ts";
import { type ModelProfile, profileTruth } from "../scripts/emulator/profile.ts";
import { loadMs, prefillMs } from "../scripts/emulator/timing.ts";
import { countTokens, tokenize, tokenPieces } from "../scripts/emulator/tokenizer.ts";
import { ProfileError, validateProfiles } from "../scripts/emulator/validation.ts";
import {
  loadFleet,
  needlePrompt,
  plainErrorText,
  quietLogger,
  testProfile,
  TimedOut,
  withEmulator,
  within,
} from "./support/emulator.ts";

// The SDK's `ws` sockets finish closing after the server is gone; that is not a leak of ours.
const sdkTest = { sanitizeOps: false, sanitizeResources: false };

function client(emulator: Emulator): LMStudioClient {
  return new LMStudioClient({
    baseUrl: emulator.url,
    logger: quietLogger,
  });
}

/** The size and declared context of this file's test models, larger than testProfile's defaults. */
const SIZED = { sizeBytes: 4_500_000_000, declaredContext: 32768 };

/** The fleet's profile for `modelKey`; fails the test when the fleet lacks it. */
function fleetModel(fleet: ModelProfile[], modelKey: string): ModelProfile {
  const found = fleet.find((p) => p.modelKey === modelKey);
  assert.ok(found !== undefined, `the demo fleet has no ${modelKey}`);
  return found;
}

type LimitField = "loadFailAbove" | "fitAbove" | "brokenAbove" | "needleFailAbove" | "noisyBand";

/** A limit a test relies on; fails the test when the profile does not set it. */
function limit(p: ModelProfile, field: LimitField): number {
  const value = p[field];
  assert.ok(value !== undefined, `${p.modelKey} sets no ${field}`);
  return value;
}

async function httpStats(emulator: Emulator): Promise<EmulatorStats> {
  const response = await fetch(`${emulator.httpUrl}/__emulator/stats`);
  assert.equal(response.status, 200);
  return await response.json();
}

async function httpPost(emulator: Emulator, path: string, body: unknown): Promise<Response> {
  return await fetch(`${emulator.httpUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

const QUICK = 3000;

Deno.test("the demo fleet has the true limits its profiles imply", async (t) => {
  const fleet = await loadFleet();
  const truth = Object.fromEntries(fleet.map((p) => [p.modelKey, profileTruth(p)]));
  const expected: Record<string, [number, number, number]> = {
    "qwen2.5-7b-instruct": [32768, 32768, 32768],
    "llama-3.1-8b-instruct": [59392, 59392, 59392],
    "mistral-nemo-instruct-2407": [131072, 18700, 18700],
    "phi-3-mini-128k-instruct": [131072, 49000, 49000],
    "gemma-2-9b-it": [8192, 5400, 5400],
    "llama-3.2-3b-instruct-mlx": [45000, 45000, 45000],
    "deepseek-r1-distill-qwen-7b": [131072, 23000, 23000],
    "mistral-7b-instruct-v0.3": [32768, 13000, 10952],
    "qwen2.5-7b-instruct-1m": [230000, 120000, 120000],
    "llama-3.3-70b-instruct": [14000, 14000, 14000],
    "qwen3-30b-a3b-instruct-2507": [40960, 40960, 40960],
    "gemma-3-12b-it": [65536, 30000, 30000],
    "gpt-oss-20b": [131072, 12200, 12200],
    "qwen3-8b": [131072, 28000, 28000],
    "qwen2.5-coder-7b-instruct-mlx": [0, 0, 0],
    "text-embedding-nomic-embed-text-v1.5": [2048, 2048, 2048],
  };
  await t.step("each profile's loadable, working and floor", () => {
    for (const [key, [loadable, working, workingFloor]] of Object.entries(expected)) {
      assert.deepEqual(truth[key], { loadable, working, workingFloor }, key);
    }
    assert.equal(fleet.length, Object.keys(expected).length);
  });
  await t.step("the fleet covers every behaviour the emulator has", () => {
    const modes = new Set(fleet.map((p) => p.needleFailMode).filter((m) => m !== undefined));
    assert.deepEqual([...modes].sort(), ["empty", "gibberish", "wrong-number"]);
    assert.ok(fleet.some((p) => p.fitAbove !== undefined && p.format === "mlx"));
    assert.ok(fleet.some((p) => p.loadFailAbove !== undefined));
    assert.ok(fleet.some((p) => p.brokenAbove !== undefined));
    assert.ok(fleet.some((p) => p.noisyBand !== undefined));
    assert.ok(fleet.some((p) => p.declaredContext === 1_048_576));
    assert.ok(fleet.some((p) => p.type === "embedding"));
    const refusals = new Set(fleet.map((p) => p.refusal ?? "guardrail"));
    assert.deepEqual([...refusals].sort(), ["engine", "exit-code", "guardrail"]);
    assert.ok(fleet.some((p) => p.noRuntime === true));
    assert.ok(fleet.some((p) => p.fitUpTo !== undefined));
    assert.ok(fleet.some((p) => p.crashAbove !== undefined));
    assert.ok(fleet.some((p) => p.promptCache === false));
    for (const p of fleet) assert.equal(Math.log2(p.declaredContext) % 1, 0, p.modelKey);
  });
});

Deno.test("profile validation rejects malformed documents with the field named", async (t) => {
  const good = testProfile("ok-model", SIZED);
  const cases: [string, unknown, RegExp][] = [
    ["no models list", {}, /"models" list/],
    ["an unknown field", { models: [{ ...good, contextSize: 1 }] }, /unknown field "contextSize"/],
    ["a bad type", { models: [{ ...good, type: "vision" }] }, /"type"/],
    ["a non-integer limit", { models: [{ ...good, fitAbove: 1.5 }] }, /"fitAbove"/],
    ["a cliff without mode", { models: [{ ...good, needleFailAbove: 100 }] }, /needleFailMode/],
    ["a band without cliff", { models: [{ ...good, noisyBand: 10 }] }, /needs "needleFailAbove"/],
    ["a duplicate key", { models: [good, good] }, /appears twice/],
    ["a shrink without its size", { models: [{ ...good, shrinks: { afterLoads: 1 } }] }, /shrinks/],
    ["a bad fault list", { models: [{ ...good, faults: { dropOnLoad: [0] } }] }, /dropOnLoad/],
  ];
  for (const [name, document, pattern] of cases) {
    await t.step(`rejects ${name}`, () => {
      assert.throws(() => validateProfiles(document), (error: unknown) => {
        assert.ok(error instanceof ProfileError);
        assert.match(error.message, pattern);
        return true;
      });
    });
  }
  await t.step("accepts the demo fleet", async () => {
    const fleet = await loadFleet();
    assert.deepEqual(validateProfiles({ models: fleet }), fleet);
  });
});

Deno.test("the tokenizer is consistent and fast", async (t) => {
  await t.step("counts words, digits and symbols as the rules say", () => {
    assert.equal(countTokens("2+2="), 4);
    assert.equal(countTokens(" 1234567."), 9);
    assert.equal(countTokens("Hello world, again"), 4);
    assert.deepEqual(tokenPieces("The sky is: 42!"), [
      "The",
      " sky",
      " is",
      ":",
      " ",
      "4",
      "2",
      "!",
    ]);
    assert.equal(tokenPieces("emoji 😀 ok").join(""), "emoji 😀 ok");
  });
  await t.step("countTokens, tokenize and tokenPieces agree", () => {
    const text = needlePrompt({ key: "red-fox", value: "1234567", tokens: 5000 });
    assert.equal(countTokens(text), 5000);
    assert.equal(tokenize(text).length, 5000);
    assert.equal(tokenPieces(text).length, 5000);
  });
  await t.step("counts a 130k-token prompt in under 50 ms", () => {
    const text = needlePrompt({ key: "red-fox", value: "1234567", tokens: 130_000 });
    countTokens(text); // warm up the JIT
    const started = performance.now();
    const n = countTokens(text);
    const elapsed = performance.now() - started;
    assert.equal(n, 130_000);
    assert.ok(elapsed < 50, `took ${elapsed.toFixed(1)} ms`);
  });
});

Deno.test("answers follow the profile's rules", async (t) => {
  const cliff = testProfile("cliff", {
    ...SIZED,
    needleFailAbove: 1000,
    needleFailMode: "wrong-number",
    noisyBand: 200,
  });
  const edge = limit(cliff, "needleFailAbove");
  const band = limit(cliff, "noisyBand");
  await t.step("a needle below the cliff is answered with its value", () => {
    const tokens = edge - band - 100;
    const prompt = needlePrompt({ key: "blue-cat", value: "7654321", tokens });
    const answer = emulatedAnswer(cliff, 4096, prompt, tokens);
    assert.deepEqual(answer, { text: " 7654321.", kind: "needle", correct: true });
  });
  await t.step("a needle past the cliff is a different 7-digit number", () => {
    const tokens = edge + 100;
    const prompt = needlePrompt({ key: "blue-cat", value: "7654321", tokens });
    const answer = emulatedAnswer(cliff, 4096, prompt, tokens);
    assert.match(answer.text, /^ \d{7}\.$/);
    assert.ok(!answer.text.includes("7654321"));
    assert.equal(answer.correct, false);
  });
  await t.step("the noisy band's failure share rises from 0 to 1", () => {
    const share = (tokens: number) => {
      let failures = 0;
      for (let i = 0; i < 400; i++) {
        if (failsInNoisyBand(cliff, `key-${i}`, String(1_000_000 + i), tokens)) failures++;
      }
      return failures / 400;
    };
    const early = edge - band * 3 / 4;
    const late = edge - band / 4;
    assert.equal(share(edge - band), 0);
    assert.ok(share(early) < 0.45, `share at ${early}: ${share(early)}`);
    assert.ok(share(late) > 0.55, `share at ${late}: ${share(late)}`);
    assert.equal(share(edge), 1);
    assert.equal(share(edge + 1), 0, "past the band the cliff rule applies, not the band");
  });
  await t.step("a question whose needle is missing gets a wrong number", () => {
    const prompt = needlePrompt({ key: "gray-owl", value: "1111111", tokens: 300 });
    const answer = emulatedAnswer(cliff, 4096, prompt.replace("gray-owl is", "grey-owl is"), 300);
    assert.equal(answer.correct, false);
    assert.match(answer.text, /^ \d{7}\.$/);
  });
  await t.step("a broken model's answers hold no digits, even for 2+2=", () => {
    const broken = testProfile("broken", { ...SIZED, brokenAbove: 2048 });
    const brokenAbove = limit(broken, "brokenAbove");
    const answer = emulatedAnswer(broken, brokenAbove + 1, "2+2=", 4);
    assert.equal(answer.correct, false);
    assert.doesNotMatch(answer.text, /\d/);
    assert.equal(emulatedAnswer(broken, brokenAbove, "2+2=", 4).text, " 4");
  });
});

Deno.test("the virtual clock's timings are realistic", async (t) => {
  const fleet = await loadFleet();
  const qwen = fleetModel(fleet, "qwen2.5-7b-instruct");
  const big = fleetModel(fleet, "llama-3.3-70b-instruct");
  await t.step("a 7B Q4 model loads in about 6 seconds", () => {
    const ms = loadMs(qwen, 4096);
    assert.ok(ms > 5000 && ms < 8000, `${ms} ms`);
  });
  await t.step("prefill runs at 3-6k tokens/s at short context and slower deep in 128k", () => {
    const short = 4096 / (prefillMs(qwen, 0, 4096) / 1000);
    assert.ok(short > 3000 && short < 6000, `${short.toFixed(0)} tok/s`);
    const deep = 4096 / (prefillMs(qwen, 126_976, 131_072) / 1000);
    assert.ok(deep < short / 3, `${deep.toFixed(0)} tok/s deep`);
  });
  await t.step("a 70B model is much slower than a 7B one", () => {
    assert.ok(loadMs(big, 4096) > 5 * loadMs(qwen, 4096));
    assert.ok(prefillMs(big, 0, 4096) > 5 * prefillMs(qwen, 0, 4096));
  });
});

Deno.test("the SDK lists, loads, reads back, counts and unloads", sdkTest, async (t) => {
  const fleet = await loadFleet();
  const qwen = fleetModel(fleet, "qwen2.5-7b-instruct");
  const nemoProfile = fleetModel(fleet, "mistral-nemo-instruct-2407");
  const gemma = fleetModel(fleet, "gemma-2-9b-it");
  const mlxProfile = fleetModel(fleet, "llama-3.2-3b-instruct-mlx");
  const guarded = fleetModel(fleet, "llama-3.1-8b-instruct");
  const embeddingProfile = fleetModel(fleet, "text-embedding-nomic-embed-text-v1.5");
  // An arbitrary, non-round context below qwen's loadable one.
  const probeContext = Math.min(12345, profileTruth(qwen).loadable - 1);
  // The emulator's default when no context is asked: 4096, capped at the declared context.
  const gemmaDefault = Math.min(4096, gemma.declaredContext);
  const fit = limit(mlxProfile, "fitAbove");
  const guardrail = limit(guarded, "loadFailAbove");
  await withEmulator(fleet, async (emulator) => {
    const lms = client(emulator);
    await t.step(
      "the greeting answers lmstudio: true and marks itself as the emulator",
      async () => {
        const response = await fetch(`${emulator.httpUrl}/lmstudio-greeting`);
        assert.deepEqual(await response.json(), { lmstudio: true, lmstrixEmulator: true });
      },
    );
    await t.step("listDownloadedModels reports every profile with its fields", async () => {
      const models = await within(lms.system.listDownloadedModels(), QUICK);
      assert.equal(models.length, fleet.length);
      const nemo = models.find((m) => m.modelKey === "mistral-nemo-instruct-2407");
      assert.ok(nemo !== undefined && nemo.type === "llm");
      assert.equal(nemo.maxContextLength, nemoProfile.declaredContext);
      assert.equal(nemo.format, nemoProfile.format);
      assert.equal(nemo.architecture, nemoProfile.architecture);
      assert.equal(nemo.paramsString, nemoProfile.paramsString);
      const bits = Number(/\d+/.exec(nemoProfile.quantization)?.[0]);
      assert.ok(Number.isInteger(bits) && bits > 0, nemoProfile.quantization);
      assert.deepEqual(nemo.quantization, { name: nemoProfile.quantization, bits });
      assert.equal(nemo.sizeBytes, nemoProfile.sizeBytes);
      assert.equal(nemo.trainedForToolUse, nemoProfile.trainedForToolUse ?? false);
      assert.equal(nemo.vision, false);
      const mlx = models.find((m) => m.modelKey === mlxProfile.modelKey);
      assert.equal(mlx?.format, "safetensors");
      const embedding = models.find((m) => m.type === "embedding");
      assert.equal(embedding?.modelKey, embeddingProfile.modelKey);
      const llmsOnly = await within(lms.system.listDownloadedModels("llm"), QUICK);
      assert.equal(llmsOnly.length, fleet.length - 1);
    });
    await t.step("a load at a context reads back that context", async () => {
      const model = await within(
        lms.llm.load("qwen2.5-7b-instruct", {
          identifier: "probe-a",
          config: { contextLength: probeContext },
          verbose: false,
        }),
        QUICK,
      );
      assert.equal(model.identifier, "probe-a");
      assert.equal(await within(model.getContextLength(), QUICK), probeContext);
      const info = await within(model.getModelInfo(), QUICK);
      assert.equal(info.contextLength, probeContext);
      assert.equal(info.maxContextLength, qwen.declaredContext);
    });
    await t.step("countTokens and tokenize equal the exported tokenizer", async () => {
      const model = await within(lms.llm.model("probe-a"), QUICK);
      const text = needlePrompt({ key: "amber-wolf", value: "2468135", tokens: 2000 });
      assert.equal(await within(model.countTokens(text), QUICK), countTokens(text));
      assert.equal(await within(model.countTokens("2+2="), QUICK), 4);
      assert.deepEqual(await within(model.tokenize("Hello world"), QUICK), tokenize("Hello world"));
    });
    await t.step("a load without identifier gets the model key, then key:2", async () => {
      const first = await within(lms.llm.load("gemma-2-9b-it", { verbose: false }), QUICK);
      const second = await within(lms.llm.load("gemma-2-9b-it", { verbose: false }), QUICK);
      assert.equal(first.identifier, "gemma-2-9b-it");
      assert.equal(second.identifier, "gemma-2-9b-it:2");
      assert.equal(await within(first.getContextLength(), QUICK), gemmaDefault, "default context");
    });
    await t.step("listLoaded shows every instance with its context", async () => {
      const loaded = await within(lms.llm.listLoaded(), QUICK);
      assert.deepEqual(loaded.map((m) => m.identifier).sort(), [
        "gemma-2-9b-it",
        "gemma-2-9b-it:2",
        "probe-a",
      ]);
      const infos = await Promise.all(loaded.map((m) => within(m.getModelInfo(), QUICK)));
      assert.deepEqual(
        infos.map((i) => i.contextLength).sort((a, b) => a - b),
        [probeContext, gemmaDefault, gemmaDefault].sort((a, b) => a - b),
      );
    });
    await t.step("unload by handle and by identifier remove instances", async () => {
      const [handle] = (await within(lms.llm.listLoaded(), QUICK)).filter((m) =>
        m.identifier === "gemma-2-9b-it"
      );
      assert.ok(handle !== undefined);
      await within(handle.unload(), QUICK);
      await within(lms.llm.unload("gemma-2-9b-it:2"), QUICK);
      const loaded = await within(lms.llm.listLoaded(), QUICK);
      assert.deepEqual(loaded.map((m) => m.identifier), ["probe-a"]);
      await assert.rejects(
        within(handle.getContextLength(), QUICK),
        (error: unknown) => /already been unloaded/.test(plainErrorText(error)),
      );
      await assert.rejects(
        within(handle.getModelInfo(), QUICK),
        (error: unknown) => /already been unloaded/.test(plainErrorText(error)),
      );
      await assert.rejects(
        within(lms.llm.unload("gemma-2-9b-it"), QUICK),
        (error: unknown) =>
          /Cannot find a model with identifier "gemma-2-9b-it"/.test(plainErrorText(error)),
      );
    });
    await t.step("a fitted MLX load reports the fitted context", async () => {
      assert.ok(fit < mlxProfile.declaredContext, "the fit must be below the declared context");
      const model = await within(
        lms.llm.load(mlxProfile.modelKey, {
          config: { contextLength: mlxProfile.declaredContext },
          verbose: false,
        }),
        QUICK,
      );
      assert.equal(await within(model.getContextLength(), QUICK), fit);
      assert.equal((await within(model.getModelInfo(), QUICK)).contextLength, fit);
      const justAbove = await within(
        lms.llm.load(mlxProfile.modelKey, {
          identifier: "mlx-just-above",
          config: { contextLength: fit + 1 },
          verbose: false,
        }),
        QUICK,
      );
      assert.equal(await within(justAbove.getContextLength(), QUICK), fit);
      const atFit = await within(
        lms.llm.load(mlxProfile.modelKey, {
          identifier: "mlx-at-fit",
          config: { contextLength: fit },
          verbose: false,
        }),
        QUICK,
      );
      assert.equal(await within(atFit.getContextLength(), QUICK), fit);
      const below = await within(
        lms.llm.load(mlxProfile.modelKey, {
          identifier: "mlx-below",
          config: { contextLength: fit - 1 },
          verbose: false,
        }),
        QUICK,
      );
      assert.equal(
        await within(below.getContextLength(), QUICK),
        fit - 1,
        "below the fit: as asked",
      );
      await within(model.unload(), QUICK);
      await within(justAbove.unload(), QUICK);
      await within(atFit.unload(), QUICK);
      await within(below.unload(), QUICK);
    });
    await t.step("a load above the guardrail is refused with LM Studio's text", async () => {
      await assert.rejects(
        within(
          lms.llm.load(guarded.modelKey, {
            config: { contextLength: guardrail + 1 },
            verbose: false,
          }),
          QUICK,
        ),
        (error: unknown) => {
          const text = plainErrorText(error);
          assert.match(
            text,
            /Model loading was stopped due to insufficient system resources\. Under the current settings, this model requires approximately \d+\.\d\d GB of memory, and continuing to load it would likely overload your system and cause it to freeze\. If you believe this is a mistake, you can try to change the model loading guardrails in the settings\./,
          );
          return true;
        },
      );
      const atLimit = await within(
        lms.llm.load(guarded.modelKey, {
          config: { contextLength: guardrail },
          verbose: false,
        }),
        QUICK,
      );
      assert.equal(await within(atLimit.getContextLength(), QUICK), guardrail);
      await within(atLimit.unload(), QUICK);
    });
    await t.step("a load above the declared context fails", async () => {
      await assert.rejects(
        within(
          lms.llm.load(qwen.modelKey, {
            config: { contextLength: qwen.declaredContext + 1 },
            verbose: false,
          }),
          QUICK,
        ),
        (error: unknown) =>
          plainErrorText(error).includes(`maximum context length (${qwen.declaredContext})`),
      );
    });
    await t.step("a load reusing a loaded identifier fails", async () => {
      await assert.rejects(
        within(
          lms.llm.load("gemma-2-9b-it", { identifier: "probe-a", verbose: false }),
          QUICK,
        ),
        (error: unknown) => /identifier "probe-a" is already loaded/.test(plainErrorText(error)),
      );
    });
    await t.step("an embedding model loads through the embedding namespace", async () => {
      const model = await within(
        lms.embedding.load(embeddingProfile.modelKey, { verbose: false }),
        QUICK,
      );
      assert.equal(
        await within(model.getContextLength(), QUICK),
        embeddingProfile.declaredContext,
        "an embedding model loads at its declared context",
      );
      assert.equal(await within(model.countTokens("2+2="), QUICK), 4);
      assert.equal((await within(lms.embedding.listLoaded(), QUICK)).length, 1);
      await within(model.unload(), QUICK);
    });
    await t.step("an unknown model key is rejected as not found", async () => {
      await assert.rejects(
        within(lms.llm.load("no-such-model", { verbose: false }), QUICK),
        (error: unknown) =>
          /Cannot find a model with path "no-such-model"/.test(plainErrorText(error)),
      );
    });
    await t.step("an embedding model cannot be loaded as an LLM", async () => {
      await assert.rejects(
        within(lms.llm.load(embeddingProfile.modelKey, { verbose: false }), QUICK),
        (error: unknown) => /wrong domain/.test(plainErrorText(error)),
      );
    });
    await t.step("stats over HTTP reflect the loads and unloads", async () => {
      const stats = await httpStats(emulator);
      assert.deepEqual(stats.loaded, [
        { identifier: "probe-a", modelKey: qwen.modelKey, contextLength: probeContext },
      ]);
      assert.equal(stats.unloads, 8);
      const refused = stats.loads.filter((l) => l.modelKey === guarded.modelKey && !l.ok);
      assert.deepEqual(refused.map((l) => [l.askedContext, l.loadedContext]), [[
        guardrail + 1,
        null,
      ]]);
      assert.match(refused[0]?.error ?? "", /insufficient system resources/);
      const admitted = stats.loads.filter((l) => l.modelKey === guarded.modelKey && l.ok);
      assert.deepEqual(admitted.map((l) => [l.askedContext, l.loadedContext]), [[
        guardrail,
        guardrail,
      ]]);
      const mlxLoads = stats.loads.filter((l) => l.modelKey === mlxProfile.modelKey);
      assert.deepEqual(mlxLoads.map((l) => [l.askedContext, l.loadedContext]), [
        [mlxProfile.declaredContext, fit],
        [fit + 1, fit],
        [fit, fit],
        [fit - 1, fit - 1],
      ]);
      const first = stats.loads[0];
      assert.ok(first !== undefined && first.virtualMs > 5000 && first.virtualMs < 9000);
      assert.ok(stats.virtualMs >= stats.loads.reduce((sum, l) => sum + l.virtualMs, 0));
      assert.ok(stats.tokenCounts >= 3);
    });
  });
});

Deno.test("the SDK's complete answers like the profile says", sdkTest, async (t) => {
  const fleet = await loadFleet();
  const qwen = fleetModel(fleet, "qwen2.5-7b-instruct");
  const nemo = fleetModel(fleet, "mistral-nemo-instruct-2407");
  const deepseek = fleetModel(fleet, "deepseek-r1-distill-qwen-7b");
  const gemma = fleetModel(fleet, "gemma-2-9b-it");
  const phi = fleetModel(fleet, "phi-3-mini-128k-instruct");
  // Room above a needle cliff: the prompt just past it plus an answer fit in this context.
  const pastCliff = (p: ModelProfile) => limit(p, "needleFailAbove") + 1024;
  await withEmulator(fleet, async (emulator) => {
    const lms = client(emulator);
    let loads = 0;
    const load = async (key: string, contextLength: number) =>
      await within(
        lms.llm.load(key, {
          identifier: `${key}@${contextLength}#${++loads}`,
          config: { contextLength },
          verbose: false,
        }),
        QUICK,
      );
    const ask = async (
      model: Awaited<ReturnType<typeof load>>,
      prompt: string,
      maxTokens = 64,
    ) => (await within(model.complete(prompt, { maxTokens, temperature: 0 }), QUICK)).content;

    await t.step("an honest model finds the needle and adds 2+2", async () => {
      const { loadable, working } = profileTruth(qwen);
      const model = await load(qwen.modelKey, loadable);
      // The contract's probe: a prompt filling the working context up to a 64-token reserve.
      const prompt = needlePrompt({ key: "silver-lake", value: "3141592", tokens: working - 64 });
      assert.equal(await ask(model, prompt), " 3141592.");
      assert.equal(await ask(model, "2+2="), " 4");
      const result = await within(model.complete("2+2=", { maxTokens: 8 }), QUICK);
      assert.equal(result.stats.promptTokensCount, 4);
      assert.equal(result.stats.predictedTokensCount, 2);
      assert.equal(result.stats.stopReason, "eosFound");
      assert.equal(result.modelInfo.identifier, `${qwen.modelKey}@${loadable}#1`);
    });
    await t.step("maxTokens truncates the answer", async () => {
      const model = await load("qwen2.5-7b-instruct", 4096);
      const prompt = needlePrompt({ key: "silver-lake", value: "3141592", tokens: 1000 });
      const result = await within(model.complete(prompt, { maxTokens: 3 }), QUICK);
      assert.equal(result.content, " 31");
      assert.equal(result.stats.stopReason, "maxPredictedTokensReached");
    });
    await t.step("a wrong-number model answers another number past its cliff", async () => {
      const cliff = limit(nemo, "needleFailAbove");
      assert.equal(nemo.needleFailMode, "wrong-number");
      const model = await load(nemo.modelKey, pastCliff(nemo));
      const below = needlePrompt({ key: "quiet-river", value: "2718281", tokens: cliff });
      const above = needlePrompt({ key: "quiet-river", value: "2718281", tokens: cliff + 1 });
      assert.equal(await ask(model, below), " 2718281.", "at the cliff the answer is right");
      const wrong = await ask(model, above);
      assert.match(wrong, /^ \d{7}\.$/);
      assert.ok(!wrong.includes("2718281"));
    });
    await t.step("a gibberish model answers text without digits past its cliff", async () => {
      const cliff = limit(deepseek, "needleFailAbove");
      assert.equal(deepseek.needleFailMode, "gibberish");
      const model = await load(deepseek.modelKey, pastCliff(deepseek));
      const below = needlePrompt({ key: "quiet-river", value: "2718281", tokens: cliff });
      assert.equal(await ask(model, below), " 2718281.", "at the cliff the answer is right");
      const above = needlePrompt({ key: "quiet-river", value: "2718281", tokens: cliff + 1 });
      const answer = await ask(model, above);
      assert.ok(answer.length > 10);
      assert.doesNotMatch(answer, /\d/);
      assert.equal(await ask(model, "2+2="), " 4", "sanity still passes");
    });
    await t.step("an empty-mode model answers nothing past its cliff", async () => {
      const cliff = limit(gemma, "needleFailAbove");
      assert.equal(gemma.needleFailMode, "empty");
      const model = await load(gemma.modelKey, pastCliff(gemma));
      const below = needlePrompt({ key: "quiet-river", value: "2718281", tokens: cliff });
      assert.equal(await ask(model, below), " 2718281.", "at the cliff the answer is right");
      const above = needlePrompt({ key: "quiet-river", value: "2718281", tokens: cliff + 1 });
      assert.equal(await ask(model, above), "");
    });
    await t.step("a model loaded above brokenAbove answers gibberish to everything", async () => {
      const brokenAbove = limit(phi, "brokenAbove");
      const model = await load(phi.modelKey, brokenAbove + 1);
      assert.doesNotMatch(await ask(model, "2+2="), /\d/);
      const fine = await load(phi.modelKey, brokenAbove);
      assert.equal(await ask(fine, "2+2="), " 4");
    });
    await t.step("a prompt longer than the loaded context is refused", async () => {
      const model = await load("qwen2.5-7b-instruct", 2048);
      const prompt = needlePrompt({ key: "quiet-river", value: "2718281", tokens: 2049 });
      await assert.rejects(
        within(model.complete(prompt, { maxTokens: 16 }), QUICK),
        (error: unknown) =>
          /number of tokens to keep from the initial prompt is greater than the context length/
            .test(plainErrorText(error)),
      );
    });
    await t.step("an answer that would overflow the context stops at the limit", async () => {
      const model = await load("qwen2.5-7b-instruct", 2048);
      const prompt = needlePrompt({ key: "quiet-river", value: "2718281", tokens: 2044 });
      const result = await within(model.complete(prompt, { maxTokens: 64 }), QUICK);
      assert.equal(result.content, " 271");
      assert.equal(result.stats.stopReason, "contextLengthReached");
    });
    await t.step("the prompt cache prefills only what changed", async () => {
      await httpPost(emulator, "/__emulator/reset", {});
      const model = await load("qwen2.5-7b-instruct", 8192);
      const prompt = needlePrompt({ key: "quiet-river", value: "2718281", tokens: 6000 });
      await ask(model, prompt);
      await ask(model, prompt);
      await ask(model, prompt.slice(0, prompt.length - 40) + " and what else?");
      const stats = await httpStats(emulator);
      const prefilled = stats.predictions.map((p) => p.prefilledTokens);
      assert.equal(prefilled[0], 6000);
      assert.equal(prefilled[1], 1, "same prompt: only the last token again");
      assert.ok(prefilled[2] !== undefined && prefilled[2] > 1 && prefilled[2] < 20);
      const times = stats.predictions.map((p) => p.virtualMs);
      assert.ok(times[0] !== undefined && times[1] !== undefined && times[0] > 4 * times[1]);
    });
    await t.step("stats record each prediction's kind and grade", async () => {
      await httpPost(emulator, "/__emulator/reset", {});
      const cliff = limit(nemo, "needleFailAbove");
      const context = pastCliff(nemo);
      const model = await load(nemo.modelKey, context);
      await ask(model, needlePrompt({ key: "calm-sea", value: "1234567", tokens: cliff - 100 }));
      await ask(model, needlePrompt({ key: "calm-sea", value: "1234567", tokens: cliff + 100 }));
      await ask(model, "2+2=");
      await ask(model, "Tell me a joke.");
      const stats = await httpStats(emulator);
      assert.deepEqual(
        stats.predictions.map((p) => [p.kind, p.correct, p.promptTokens, p.loadedContext]),
        [
          ["needle", true, cliff - 100, context],
          ["needle", false, cliff + 100, context],
          ["sanity", true, 4, context],
          ["other", null, 5, context],
        ],
      );
      assert.ok(stats.predictions.every((p) => p.virtualMs > 0));
    });
  });
});

Deno.test("cancelling stops a prediction or a load in flight", sdkTest, async (t) => {
  const slow = testProfile("slow-model", { ...SIZED, realDelayMs: { load: 3000, predict: 3000 } });
  await withEmulator([slow, testProfile("fast-model", SIZED)], async (emulator) => {
    const lms = client(emulator);
    await t.step("an aborted load rejects at once and loads nothing", async () => {
      const controller = new AbortController();
      const loading = lms.llm.load("slow-model", { signal: controller.signal, verbose: false });
      setTimeout(() => controller.abort(new Error("stop loading")), 100);
      const started = performance.now();
      await assert.rejects(within(loading, QUICK), /stop loading/);
      assert.ok(performance.now() - started < 1000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const stats = emulator.stats();
      assert.deepEqual(stats.loaded, []);
      assert.equal(stats.loads[0]?.error, "cancelled");
    });
    await t.step("an aborted prediction ends with stop reason userStopped", async () => {
      emulator.loadByHand("slow-model", "slow", 4096);
      const model = await within(lms.llm.model("slow"), QUICK);
      const controller = new AbortController();
      const prediction = model.complete("2+2=", { signal: controller.signal, maxTokens: 8 });
      setTimeout(() => controller.abort(), 100);
      const started = performance.now();
      const result = await within(prediction, QUICK);
      assert.ok(performance.now() - started < 1000);
      assert.equal(result.stats.stopReason, "userStopped");
      assert.equal(result.content, "");
      assert.equal(emulator.stats().predictions[0]?.stopReason, "userStopped");
    });
  });
});

Deno.test("faults drop the connection or hang, and the client recovers", sdkTest, async (t) => {
  const faulty = testProfile("faulty-model", {
    ...SIZED,
    faults: { dropOnLoad: [1], dropOnPredict: [2], hangOnCountTokens: [1], hangOnPredict: [4] },
  });
  await withEmulator([faulty], async (emulator) => {
    const lms = client(emulator);
    await t.step("a dropped load rejects and the next load on the same client works", async () => {
      await assert.rejects(
        within(lms.llm.load("faulty-model", { verbose: false }), QUICK),
        /WebSocket connection closed/,
      );
      const model = await within(lms.llm.load("faulty-model", { verbose: false }), QUICK);
      assert.equal(await within(model.getContextLength(), QUICK), 4096);
      const stats = emulator.stats();
      assert.deepEqual(stats.loads.map((l) => [l.ok, l.error]), [[false, "fault: drop"], [
        true,
        null,
      ]]);
    });
    await t.step("a dropped prediction rejects and the next one works", async () => {
      const model = await within(lms.llm.model("faulty-model"), QUICK);
      assert.equal((await within(model.complete("2+2="), QUICK)).content, " 4");
      await assert.rejects(within(model.complete("2+2="), QUICK), /WebSocket connection closed/);
      assert.equal((await within(model.complete("2+2="), QUICK)).content, " 4");
    });
    await t.step("a hung countTokens never settles; the next call answers", async () => {
      const model = await within(lms.llm.model("faulty-model"), QUICK);
      await assert.rejects(within(model.countTokens("2+2="), 300), TimedOut);
      assert.equal(await within(model.countTokens("2+2="), QUICK), 4);
    });
    await t.step("a hung prediction ignores cancel", async () => {
      const model = await within(lms.llm.model("faulty-model"), QUICK);
      const controller = new AbortController();
      const prediction = model.complete("2+2=", { signal: controller.signal });
      setTimeout(() => controller.abort(), 50);
      await assert.rejects(within(prediction, 400), TimedOut);
    });
    await t.step("one-shot faults injected over HTTP apply once", async () => {
      const response = await httpPost(emulator, "/__emulator/faults", {
        dropNextPredict: true,
        hangNextPredict: true,
      });
      assert.equal(response.status, 200);
      await response.body?.cancel();
      const model = await within(lms.llm.model("faulty-model"), QUICK);
      await assert.rejects(within(model.complete("2+2="), QUICK), /WebSocket connection closed/);
      await assert.rejects(within(model.complete("2+2="), 300), TimedOut);
      assert.equal((await within(model.complete("2+2="), QUICK)).content, " 4");
      const bad = await httpPost(emulator, "/__emulator/faults", { explode: true });
      assert.equal(bad.status, 400);
      await bad.body?.cancel();
    });
  });
});

Deno.test("the HTTP control endpoints load by hand and reset", sdkTest, async (t) => {
  const fleet = await loadFleet();
  const mlx = fleetModel(fleet, "llama-3.2-3b-instruct-mlx");
  const fit = limit(mlx, "fitAbove");
  // Between the fit and the declared context: admitted, then fitted down.
  const asked = Math.floor((fit + mlx.declaredContext) / 2);
  await withEmulator(fleet, async (emulator) => {
    const lms = client(emulator);
    await t.step("a by-hand load shows up in listLoaded with its context", async () => {
      assert.ok(asked > fit, "the asked context must be above the fit");
      const response = await httpPost(emulator, "/__emulator/load", {
        modelKey: mlx.modelKey,
        identifier: "by-hand",
        contextLength: asked,
      });
      assert.deepEqual(await response.json(), {
        identifier: "by-hand",
        modelKey: mlx.modelKey,
        contextLength: fit,
      });
      const loaded = await within(lms.llm.listLoaded(), QUICK);
      assert.deepEqual(loaded.map((m) => m.identifier), ["by-hand"]);
      assert.equal(await within(loaded[0]!.getContextLength(), QUICK), fit);
      assert.equal(emulator.stats().loads.length, 0, "by-hand loads are not the tool's loads");
    });
    await t.step("a by-hand load of an unknown model is a 404", async () => {
      const response = await httpPost(emulator, "/__emulator/load", { modelKey: "nope" });
      assert.equal(response.status, 404);
      await response.body?.cancel();
    });
    await t.step("reset unloads everything and clears the stats", async () => {
      const model = await within(lms.llm.model("by-hand"), QUICK);
      await within(model.complete("2+2="), QUICK);
      assert.ok((await httpStats(emulator)).virtualMs > 0);
      const response = await httpPost(emulator, "/__emulator/reset", {});
      assert.equal(response.status, 200);
      await response.body?.cancel();
      const stats = await httpStats(emulator);
      assert.deepEqual(stats, {
        virtualMs: 0,
        loads: [],
        predictions: [],
        loaded: [],
        unloads: 0,
        tokenCounts: 0,
      });
      assert.deepEqual(await within(lms.llm.listLoaded(), QUICK), []);
    });
  });
});

Deno.test("unknown endpoints and frames get an error, never silence", async (t) => {
  await withEmulator([testProfile("m", SIZED)], async (emulator) => {
    const socket = new WebSocket(`${emulator.url}/llm`);
    const inbox: unknown[] = [];
    const waiters: ((value: unknown) => void)[] = [];
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data));
      const waiter = waiters.shift();
      if (waiter) waiter(message);
      else inbox.push(message);
    };
    const next = () =>
      within(
        inbox.length > 0
          ? Promise.resolve(inbox.shift())
          : new Promise((resolve) => waiters.push(resolve)),
        QUICK,
        "frame",
      );
    await new Promise((resolve) => (socket.onopen = resolve));
    try {
      await t.step("the auth handshake answers success", async () => {
        socket.send(JSON.stringify({ authVersion: 1, clientIdentifier: "a", clientPasskey: "b" }));
        assert.deepEqual(await next(), { success: true });
      });
      await t.step("keepAlive is acknowledged", async () => {
        socket.send(JSON.stringify({ type: "keepAlive" }));
        assert.deepEqual(await next(), { type: "keepAliveAck" });
      });
      await t.step("an unknown RPC gets an rpcError", async () => {
        socket.send(JSON.stringify({ type: "rpcCall", endpoint: "bogus", callId: 7 }));
        const reply = await next() as Record<string, unknown>;
        assert.equal(reply.type, "rpcError");
        assert.equal(reply.callId, 7);
        assert.match(
          String((reply.error as Record<string, unknown>).title),
          /Unknown RPC endpoint "llm\/bogus"/,
        );
      });
      await t.step("an unknown channel gets a channelError", async () => {
        socket.send(JSON.stringify({ type: "channelCreate", endpoint: "bogus", channelId: 8 }));
        const reply = await next() as Record<string, unknown>;
        assert.equal(reply.type, "channelError");
        assert.equal(reply.channelId, 8);
      });
      await t.step("a predict on a model that is not loaded gets a channelError", async () => {
        socket.send(JSON.stringify({
          type: "channelCreate",
          endpoint: "predict",
          channelId: 9,
          creationParameter: {
            modelSpecifier: { type: "query", query: { identifier: "ghost" } },
            history: { messages: [] },
            predictionConfigStack: { layers: [] },
          },
        }));
        const reply = await next() as Record<string, unknown>;
        assert.equal(reply.type, "channelError");
        assert.match(JSON.stringify(reply.error), /No loaded model satisfies/);
      });
    } finally {
      socket.close();
      await new Promise((resolve) => (socket.onclose = resolve));
    }
  });
});

/** Starts the emulator's command line with `args`, stdout and stderr piped. */
function emulatorCli(...args: string[]): Deno.ChildProcess {
  return new Deno.Command("deno", {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      new URL("../scripts/emulator/main.ts", import.meta.url).pathname,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test({
  name: "the CLI takes a free port by default, prints its URL and stops on SIGTERM",
  fn: async () => {
    const child = emulatorCli();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let output = "";
    while (!output.includes("\n")) {
      const { value, done } = await within(reader.read(), 10_000, "CLI start");
      if (done) break;
      output += value;
    }
    const match = /^LM Studio emulator listening on ws:\/\/127\.0\.0\.1:(\d+)\n$/.exec(output);
    assert.ok(match?.[1] !== undefined, `unexpected output: ${JSON.stringify(output)}`);
    assert.notEqual(Number(match[1]), 1234, "LM Studio's own port is not the default");
    const greeting = await fetch(`http://127.0.0.1:${match[1]}/lmstudio-greeting`);
    assert.deepEqual(await greeting.json(), { lmstudio: true, lmstrixEmulator: true });
    child.kill("SIGTERM");
    const status = await within(child.status, 5000, "CLI exit");
    assert.equal(status.code, 0);
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const stderr = await new Response(child.stderr).text();
    assert.match(stderr, new RegExp(`--server ws://127\\.0\\.0\\.1:${match[1]}`));
  },
});

Deno.test("the CLI refuses a number out of range with one line and the usage, exit 2", async () => {
  const cases = [
    [["--port", "70000"], "--port must be an integer from 0 to 65535"],
    [["--port=1.5"], "--port must be an integer from 0 to 65535"],
    [["--time-scale", "x"], "--time-scale must be a number from 0 to 10"],
    [["--cancel-hold", "-1"], "--cancel-hold must be an integer from 0 to 10000"],
  ] as const;
  for (const [args, message] of cases) {
    const output = await emulatorCli(...args).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 2, args.join(" "));
    assert.equal(stderr.split("\n")[0], `error: ${message}`);
    assert.match(stderr, /^Usage: deno task emulator/m);
  }
});

Deno.test({
  name: "the CLI on a busy port says so in one line and a hint, with no stack trace",
  fn: async () => {
    const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const output = await emulatorCli("--port", String(busy.addr.port)).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 1);
      assert.match(stderr, new RegExp(`^error: port ${busy.addr.port} is already in use`));
      assert.match(stderr, /hint: leave out --port/);
      assert.doesNotMatch(stderr, /AddrInUse|\n\s+at /);
      assert.equal(new TextDecoder().decode(output.stdout), "");
    } finally {
      busy.close();
    }
  },
});

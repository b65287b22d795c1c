/**
 * The failure classifier against every text LM Studio is known to send (the shared notes on its
 * behaviour, sections 1, 3, 4 and 5): load failures count as "not at this size" whatever their
 * wording, prompt overflows and engine crashes are told apart, and only the connection, the
 * clock, an unknown model and our own abort are not about the size.
 */

import assert from "node:assert/strict";
import { classifyFailure, isLoadRefusal } from "../src/lmstudio/failures.ts";

/** Section 1: a load that does not happen. Every one must count as "this size did not load". */
const LOAD_FAILURES: string[] = [
  "Model loading aborted due to insufficient system resources. Overloading the system will likely cause it to freeze. If you believe this is a mistake, you can try to change the model loading guardrails in the settings.",
  "Model loading was stopped due to insufficient system resources. Under the current settings, this model requires approximately 273.25 GB of memory, and continuing to load it would likely overload your system and cause it to freeze. If you think this is incorrect, you can adjust the model loading guardrails in settings.",
  "Failed to load model\nFailed to initialize the context: failed to allocate compute pp buffers",
  "Failed to load model\nerror loading model: unable to allocate CUDA0 buffer",
  "Failed to initialize the context: failed to allocate buffer for rs cache",
  "Error loading model.\n(Exit code: 18446744073709515000). Unknown error. Try a different model and/or config.",
  "(Exit code: 133). Please check settings and try loading the model again.",
  "Engine protocol runtime llama-server for qwen3-30b exited before becoming healthy. exitCode=3221225477, signal=null",
  'LMSTUDIO_STARTUP_ERROR:{"schemaVersion":1,"code":"model_load_failed","message":"Failed to initialize the context: failed to allocate compute pp buffers"}',
  "model_load_failed",
  "failed to load model No LM Runtime found for model format gguf!",
  // A text nobody has seen yet is still a refusal of the load.
  "Something new went wrong in the engine (code 77)",
];

/** Section 3: a prompt that does not fit the loaded context. */
const OVERFLOWS: string[] = [
  "Trying to keep the first 111490 tokens when context the overflows. However, the model is loaded with context length of only 32768 tokens, which is not enough. Try to load the model with a larger context length, or provide a shorter input.",
  "The number of tokens to keep from the initial prompt is greater than the context length. Try to load the model with a larger context length, or provide a shorter input",
  "Cannot truncate prompt with n_keep (15028) >= n_ctx (7424)",
  "Input does not fit in context length. The input has 31430 tokens, but the context length only supports 30000 tokens.",
  "Context size has been exceeded",
];

/** Section 4: the engine dies during a prediction. */
const CRASHES: string[] = [
  "The model has crashed without additional information. (Exit code: 18446744072635812000)",
  "(Exit code: 133). Please check settings and try loading the model again.",
];

/** Section 5: not found, not running. */
const NOT_FOUND: string[] = [
  'Cannot find a model with path "lmstudio-community/gone.gguf"\nHere are your available models:',
  'Cannot find a model with identifier "lmstrix-abc-1"',
  "No loaded model satisfies all requirements specified in the query.",
  "This model has already been unloaded.",
];
const NOT_RUNNING: [string, string][] = [
  ["Failed to connect to LM Studio.", "unreachable"],
  ["Please make sure LM Studio is running on your machine.", "unreachable"],
  ["WebSocket connection closed", "connection-lost"],
];

Deno.test("every load failure LM Studio is known to send counts as not loading at that size", async (t) => {
  for (const text of LOAD_FAILURES) {
    await t.step(text.slice(0, 72), () => {
      const kind = classifyFailure(new Error(text));
      assert.ok(isLoadRefusal(kind), `${kind} must count as a refusal of the load`);
    });
  }
});

Deno.test("the texts of a prompt that does not fit the loaded context are recognised as such", async (t) => {
  for (const text of OVERFLOWS) {
    await t.step(text.slice(0, 72), () => {
      assert.equal(classifyFailure(new Error(text)), "context-overflow");
      // The same text from a load still means "not at this size".
      assert.ok(isLoadRefusal("context-overflow"));
    });
  }
});

Deno.test("an engine that dies during a prediction is a crash, not a fault to retry", async (t) => {
  for (const text of CRASHES) {
    await t.step(text.slice(0, 72), () => {
      assert.equal(classifyFailure(new Error(text)), "crashed");
    });
  }
});

Deno.test("unknown models, a stopped server and our own interrupts are not about the size", async (t) => {
  for (const text of NOT_FOUND) {
    await t.step(text.slice(0, 72), () => {
      assert.equal(classifyFailure(new Error(text)), "not-found");
      assert.equal(isLoadRefusal("not-found"), false);
    });
  }
  for (const [text, kind] of NOT_RUNNING) {
    await t.step(text, () => {
      assert.equal(classifyFailure(new Error(text)), kind);
      assert.equal(isLoadRefusal(classifyFailure(new Error(text))), false);
    });
  }
  await t.step("a timeout and an abort", () => {
    assert.equal(isLoadRefusal("timeout"), false);
    assert.equal(isLoadRefusal("aborted"), false);
    assert.equal(classifyFailure(Object.assign(new Error("x"), { name: "AbortError" })), "aborted");
  });
});

Deno.test("an SDK error's title, suggestion and cause read as one plain line", async (t) => {
  const { messageOf } = await import("../src/lmstudio/failures.ts");
  const cases: [string, string][] = [
    [
      " Failed to load model \n\n\n \x1b[47m  (X) CAUSE  \x1b[0m\n\n\x1b[90mfailed to load model No LM Runtime found for model format gguf!\x1b[0m",
      "Failed to load model: failed to load model No LM Runtime found for model format gguf!",
    ],
    [
      " Model loading failed \n\n\n   (!) SUGGESTION  \n\nTry a smaller context\n\n\n   (X) CAUSE  \n\n(Exit code: 133)",
      "Model loading failed: (Exit code: 133) (Try a smaller context)",
    ],
    [
      "Failed to load model\nFailed to initialize the context",
      "Failed to load model Failed to initialize the context",
    ],
  ];
  for (const [raw, expected] of cases) {
    await t.step(expected, () => assert.equal(messageOf(new Error(raw)), expected));
  }
});

Deno.test("a reply the SDK drops is explained by entry and field", async (t) => {
  const { droppedReplyReason } = await import("../src/lmstudio/failures.ts");
  const warning = (result: string) =>
    "Produced communication warning: Received invalid result for rpc, endpointName = " +
    `listDownloadedModels, result = ${result}. Zod error:\n\n` +
    "- result.1.maxContextLength: Expected number, received null\n\nThis is usually caused by…";
  await t.step("the entry is named by its model key when the reply can be read", () => {
    const reply = JSON.stringify([{ modelKey: "a" }, { modelKey: "b-odd" }]);
    assert.equal(
      droppedReplyReason(warning(reply), "listDownloadedModels"),
      'model "b-odd", maxContextLength: Expected number, received null ' +
        "(the SDK drops the whole listDownloadedModels reply)",
    );
  });
  await t.step("by its position when it cannot", () => {
    assert.match(
      droppedReplyReason(warning("[object Object],[object Object]"), "listDownloadedModels")!,
      /^entry 2, maxContextLength: Expected number/,
    );
  });
  await t.step("a warning about another call is not this one's", () => {
    assert.equal(droppedReplyReason(warning("[]"), "listLoaded"), null);
    assert.equal(droppedReplyReason("Received rpcResult for unknown rpc", "listLoaded"), null);
  });
});

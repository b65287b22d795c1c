// @ts-nocheck -- plain JavaScript run by Node, not by Deno.
/**
 * The engine's worker: llama.cpp through node-llama-cpp, in a Node process of its own.
 *
 * Why a separate Node process: Deno's npm resolution downloads every optional package of
 * node-llama-cpp (its CUDA and Vulkan builds, about 540 MB); npm installs the CPU build alone
 * (`install.ts`). And a process of its own can be given a real memory cap (`prlimit --as`), so
 * that a context too large for the budget fails inside llama.cpp for real.
 *
 * Protocol: one JSON request a line on stdin, `{ id, op, ... }`; one JSON answer a line on
 * stdout, `{ id, ok: true, ... }` or `{ id, ok: false, error, log }` where `log` holds the lines
 * llama.cpp logged while the request ran (its own account of a failure). Requests run one at a
 * time, in order, except `cancel`, which stops a running completion.
 *
 * Memory: given a budget, each context is created under a real cap on the process's address
 * space (`prlimit --as`, the soft limit only, lifted again right after): its present size, less
 * what the loaded models and contexts took, plus the budget. So what llama.cpp allocates beyond
 * the budget fails inside llama.cpp, while the rest of the process (V8's heap grows as it runs)
 * stays out of the count and the same size loads or fails the same way every time.
 *
 * Usage: node worker.mjs <node_modules dir> <threads> [budget bytes]
 */

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [modulesDir, threadsArg, budgetArg] = process.argv.slice(2);
const threads = Number(threadsArg) || 2;
const budget = budgetArg ? Number(budgetArg) : null;
const { getLlama, LlamaLogLevel } = await import(
  pathToFileURL(join(modulesDir, "node-llama-cpp", "dist", "index.js")).href
);

/** Log lines of the running request (warnings and errors; llama.cpp's reasons for failures). */
let logLines = [];
const llama = await getLlama({
  gpu: false,
  build: "never",
  maxThreads: threads,
  logLevel: LlamaLogLevel.warn,
  logger: (_level, message) => {
    logLines.push(String(message).trim());
    if (logLines.length > 50) logLines.shift();
  },
});

const models = new Map(); // path -> { model, users }
const contexts = new Map(); // id -> { context, sequence, model, size }
let nextContext = 1;
const cancelled = new Set();

function addressSpace() {
  const status = readFileSync("/proc/self/status", "utf8");
  const match = /VmSize:\s+(\d+)\s+kB/.exec(status);
  return match ? Number(match[1]) * 1024 : null;
}

async function modelFor(path) {
  let entry = models.get(path);
  if (!entry) {
    const before = addressSpace();
    entry = { model: await llama.loadModel({ modelPath: path, useMmap: true }), users: 0 };
    entry.bytes = addressSpace() - before;
    models.set(path, entry);
  }
  return entry;
}

/** Address space the loaded models and contexts took when they were made. */
function held() {
  let bytes = 0;
  for (const entry of models.values()) bytes += entry.bytes;
  for (const held of contexts.values()) bytes += held.bytes;
  return bytes;
}

/** Sets (or, with null, lifts) the soft limit of this process's address space. */
function cap(bytes) {
  execFileSync("prlimit", ["--pid", String(process.pid), `--as=${bytes ?? "unlimited"}:`]);
}

const ops = {
  init: () => ({ addressSpace: addressSpace(), buildType: llama.buildType, threads }),
  addressSpace: () => ({ addressSpace: addressSpace() }),
  async estimate({ path, contextSize }) {
    const { model } = await modelFor(path);
    const insights = model.fileInsights;
    const weights = await insights.estimateModelResourceRequirementsV2({ gpuLayers: 0 });
    const context = await insights.estimateContextResourceRequirementsV2({
      contextSize,
      modelGpuLayers: 0,
      sequences: 1,
    });
    return { modelBytes: weights.cpuRam, contextBytes: context.cpuRam };
  },
  async createContext({ path, contextSize, capped }) {
    const entry = await modelFor(path);
    const started = performance.now();
    const before = addressSpace();
    if (capped && budget !== null) cap(before - held() + budget);
    let context;
    try {
      context = await entry.model.createContext({
        contextSize,
        sequences: 1,
        threads,
        // The budget is the server's guardrail's business (or the real memory's): no estimate of
        // node-llama-cpp's own in the way, and no quiet retry at a smaller size.
        ignoreMemorySafetyChecks: true,
        failedCreationRemedy: false,
      });
    } finally {
      if (capped && budget !== null) cap(null);
    }
    entry.users++;
    const id = nextContext++;
    contexts.set(id, {
      context,
      sequence: context.getSequence(),
      entry,
      size: context.contextSize,
      bytes: addressSpace() - before,
    });
    return { contextId: id, contextSize: context.contextSize, ms: performance.now() - started };
  },
  async disposeContext({ contextId }) {
    const held = contexts.get(contextId);
    if (!held) return {};
    contexts.delete(contextId);
    await held.context.dispose();
    held.entry.users--;
    return {};
  },
  async tokenize({ path, text }) {
    const { model } = await modelFor(path);
    return { tokens: Array.from(model.tokenize(text, false)) };
  },
  async complete({ id, contextId, prompt, maxTokens, temperature }) {
    const held = contexts.get(contextId);
    if (!held) throw new Error("This model has already been unloaded.");
    const { sequence, entry } = held;
    const model = entry.model;
    const started = performance.now();
    const tokens = [model.tokens.bos, ...model.tokenize(prompt, false)];
    if (tokens.length > held.size) {
      return { overflow: true, promptTokens: tokens.length - 1 };
    }
    // The prompt cache: keep the sequence's common prefix, evaluate the rest. An append of
    // 2-63 tokens to a long cache runs about 20x slower than one of 64 (flash attention on the
    // CPU), so a short rest is widened to 64 tokens.
    const previous = sequence.contextTokens;
    let common = 0;
    while (
      common < previous.length && common < tokens.length && previous[common] === tokens[common]
    ) {
      common++;
    }
    common = Math.min(common, tokens.length - 1);
    if (tokens.length - common < 64) common = Math.max(0, tokens.length - 64);
    if (common < sequence.nextTokenIndex) {
      if (common === 0) await sequence.clearHistory();
      else {await sequence.eraseContextTokenRanges([{
          start: common,
          end: sequence.nextTokenIndex,
        }]);}
    }
    const generated = [];
    let firstTokenMs = null;
    let stopReason = "eosFound";
    const room = held.size - tokens.length;
    if (room <= 0) stopReason = "contextLengthReached";
    else {
      for await (const token of sequence.evaluate(tokens.slice(common), { temperature })) {
        if (firstTokenMs === null) firstTokenMs = performance.now() - started;
        if (cancelled.has(id)) {
          stopReason = "userStopped";
          break;
        }
        if (model.isEogToken(token)) break;
        generated.push(token);
        if (generated.length >= maxTokens) {
          stopReason = "maxPredictedTokensReached";
          break;
        }
        if (generated.length >= room) {
          stopReason = "contextLengthReached";
          break;
        }
      }
    }
    cancelled.delete(id);
    const totalMs = performance.now() - started;
    return {
      text: model.detokenize(generated),
      pieces: generated.map((token) => model.detokenize([token])),
      promptTokens: tokens.length - 1,
      evaluatedTokens: tokens.length - common,
      cachedTokens: common,
      firstTokenMs: firstTokenMs ?? totalMs,
      totalMs,
      stopReason,
    };
  },
};

let queue = Promise.resolve();
const reply = (message) => process.stdout.write(JSON.stringify(message) + "\n");

createInterface({ input: process.stdin }).on("line", (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return;
  }
  if (request.op === "cancel") {
    cancelled.add(request.target);
    reply({ id: request.id, ok: true });
    return;
  }
  queue = queue.then(async () => {
    logLines = [];
    try {
      const handler = ops[request.op];
      if (!handler) throw new Error(`unknown op "${request.op}"`);
      reply({ id: request.id, ok: true, ...(await handler(request)) });
    } catch (error) {
      reply({ id: request.id, ok: false, error: String(error?.message ?? error), log: logLines });
    }
  });
}).on("close", () => process.exit(0));

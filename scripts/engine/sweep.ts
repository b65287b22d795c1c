/**
 * The truth about the fixture models, measured through the engine directly (not through
 * LMStrix), written to `tests/fixtures/engine_truth.json` for the engine tests and the docs:
 *
 * - loadable context: the largest context the memory budget loads, with the guardrail on (the
 *   engine's estimate refuses) and off (llama.cpp fails under the real cap), found by bisection
 *   down to llama.cpp's own rounding (contexts come in steps of 256 tokens);
 * - pass rate by length: at each context size W of a ladder, a context of W tokens loaded and
 *   the contract's needle probe (`src/probe/haystack.ts`, as LMStrix builds it: the prompt fills
 *   W up to the 64-token reserve) over many seeds, greedy, at most 64 new tokens.
 *
 * Usage: deno task engine:sweep [--seeds N] [--budget BYTES] [--out FILE] [--write]
 * (`--write`: also the curve tables of the README and docs/engine.md, see `truth_table.ts`)
 *
 * @module
 */

import { Haystack } from "../../src/probe/haystack.ts";
import { RESERVE_TOKENS } from "../../src/contract.ts";
import type { EngineModel } from "./catalogue.ts";
import { startEngine } from "./server.ts";
import { curveDocs } from "./truth_table.ts";
import type { EngineBackend, Guardrail } from "./backend.ts";

/** The budget the tests run the engine with: 120 MB beyond the idle engine (the needle model loads about half its declared context in it, the random one all of its). */
export const TEST_BUDGET = 120_000_000;

/** Needle depths in the order LMStrix's search uses them. */
const DEPTHS = [0.5, 0.25, 0.75, 0.1, 0.9, 0.4, 0.6];

/**
 * Context sizes of the pass-rate ladder, for a model trained at `trained` tokens (null: not
 * trained, a few rungs show it never answers).
 */
function ladder(trained: number | null, loadable: number): number[] {
  if (trained === null) return [512, 1024, 2048, 4096].filter((w) => w <= loadable);
  const base = trained;
  const sizes = new Set<number>();
  for (const f of [0.75, 1, 1.125, 1.25, 1.375, 1.5, 1.75, 2, 2.5, 3, 4, 6, 8]) {
    sizes.add(Math.round(base * f / 64) * 64);
  }
  return [...sizes].filter((w) => w - RESERVE_TOKENS >= 300 && w <= loadable).sort((a, b) => a - b);
}

/**
 * The largest context that loads, by bisection in steps of 256 (llama.cpp's rounding): `loads`
 * loaded, `fails` (null: the declared size loaded) did not.
 */
async function loadable(
  backend: EngineBackend,
  model: EngineModel,
): Promise<{ loads: number | null; fails: number | null }> {
  const tryLoad = async (size: number) => {
    try {
      await backend.unload(await backend.load(model, size));
      return true;
    } catch {
      return false;
    }
  };
  const declared = model.gguf.declaredContext;
  if (await tryLoad(declared)) return { loads: declared, fails: null };
  let lo = 256;
  if (!(await tryLoad(lo))) return { loads: null, fails: lo };
  let hi = declared;
  while (hi - lo > 256) {
    const mid = Math.floor((lo + hi) / 2 / 256) * 256 || lo + 1;
    if (mid <= lo) break;
    if (await tryLoad(mid)) lo = mid;
    else hi = mid;
  }
  return { loads: lo, fails: hi };
}

/** Pass rate of the needle probe at context `size` over `seeds` seeds. */
async function passRate(
  backend: EngineBackend,
  model: EngineModel,
  size: number,
  seeds: number,
): Promise<{ passed: number; probes: number; ttftMs: number }> {
  const instance = await backend.load(model, size);
  let passed = 0;
  let probes = 0;
  let ttft = 0;
  try {
    for (let seed = 1; seed <= seeds; seed++) {
      const haystack = new Haystack(seed);
      const count = async (text: string) => (await backend.tokenize(model, text)).length;
      let built;
      try {
        built = await haystack.build(size - RESERVE_TOKENS, DEPTHS[seed % DEPTHS.length]!, count);
      } catch {
        continue; // No needle fits a prompt this short.
      }
      const answer = await backend.complete(instance, built.prompt, {
        maxTokens: RESERVE_TOKENS,
        temperature: 0,
      });
      probes++;
      if (!answer.overflow) {
        ttft += answer.firstTokenMs;
        if (answer.text.includes(built.value)) passed++;
      }
    }
  } finally {
    await backend.unload(instance);
  }
  return { passed, probes, ttftMs: probes > 0 ? ttft / probes : 0 };
}

/**
 * Prefill by depth: the time to the first token of cold prompts of growing length (each from a
 * new haystack, so nothing is reused), and of the same prompts grown by 256 tokens (the prefix
 * reused from the cache).
 */
async function prefill(
  backend: EngineBackend,
  model: EngineModel,
  largest: number,
): Promise<Array<{ tokens: number; coldMs: number; extendMs: number }>> {
  const sizes = [512, 1024, 2048, 4096, 8192, 16384].filter((n) => n + 512 <= largest);
  const instance = await backend.load(model, (sizes.at(-1) ?? 512) + 512);
  const count = async (text: string) => (await backend.tokenize(model, text)).length;
  const out = [];
  try {
    for (const [i, tokens] of sizes.entries()) {
      const haystack = new Haystack(1000 + i);
      const cold = await haystack.build(tokens, 0.5, count);
      const first = await backend.complete(instance, cold.prompt, { maxTokens: 1, temperature: 0 });
      const grown = await haystack.build(tokens + 256, 0.5, count);
      const second = await backend.complete(instance, grown.prompt, {
        maxTokens: 1,
        temperature: 0,
      });
      if (first.overflow || second.overflow) continue;
      out.push({ tokens, coldMs: first.firstTokenMs, extendMs: second.firstTokenMs });
    }
  } finally {
    await backend.unload(instance);
  }
  return out;
}

async function main(args: string[]): Promise<void> {
  const flag = (name: string, fallback: string) => {
    const at = args.indexOf(name);
    return at >= 0 && args[at + 1] !== undefined ? args[at + 1]! : fallback;
  };
  const seeds = Number(flag("--seeds", "40"));
  const budget = Number(flag("--budget", String(TEST_BUDGET)));
  const out = flag("--out", "tests/fixtures/engine_truth.json");
  const modelsDir = flag("--models", "tests/fixtures/models");
  const log = (line: string) => console.error(line);
  const started = Date.now();
  const result: Record<string, unknown> = {};
  type Limits = { loads: number | null; fails: number | null };
  const loadables: Record<string, Record<Guardrail, Limits>> = {};
  const loadCosts: Record<string, Record<string, unknown>> = {};
  const median = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return sorted.length === 0 ? null : Math.round(sorted[Math.floor(sorted.length / 2)]!);
  };
  for (const guardrail of ["on", "off"] as const) {
    const server = await startEngine({ models: modelsDir, guardrail, memoryBudget: budget, log });
    try {
      for (const model of server.backend.models) {
        const size = await loadable(server.backend, model);
        const none = { loads: null, fails: null };
        (loadables[model.modelKey] ??= { on: none, off: none })[guardrail] = size;
        log(`${model.modelKey}: guardrail ${guardrail}: loads ${size.loads}, not ${size.fails}`);
        const loads = server.backend.stats.loads.filter((l) => l.modelKey === model.modelKey);
        (loadCosts[model.modelKey] ??= {})[guardrail] = {
          loadedMs: median(loads.filter((l) => l.ok).map((l) => l.ms)),
          refusedMs: median(loads.filter((l) => !l.ok).map((l) => l.ms)),
          refusals: loads.filter((l) => !l.ok).map((l) => l.error),
        };
      }
    } finally {
      await server.close();
    }
  }
  const server = await startEngine({
    models: modelsDir,
    guardrail: "on",
    memoryBudget: budget,
    log,
  });
  try {
    for (const model of server.backend.models) {
      const limit = Math.min(
        loadables[model.modelKey]?.on.loads ?? 0,
        loadables[model.modelKey]?.off.loads ?? 0,
      );
      const curve = [];
      for (const size of ladder(model.gguf.trainedContext, limit)) {
        const n = model.gguf.trainedContext === null ? Math.min(seeds, 5) : seeds;
        const rate = await passRate(server.backend, model, size, n);
        curve.push({ context: size, ...rate, rate: rate.probes ? rate.passed / rate.probes : 0 });
        log(`${model.modelKey}: context ${size}: ${rate.passed}/${rate.probes} right`);
      }
      const timing = model.gguf.trainedContext === null
        ? undefined
        : await prefill(server.backend, model, limit);
      result[model.modelKey] = {
        ...(timing === undefined ? {} : { prefill: timing }),
        path: model.path,
        declaredContext: model.gguf.declaredContext,
        trainedContext: model.gguf.trainedContext,
        loadable: loadables[model.modelKey],
        loadCosts: loadCosts[model.modelKey],
        curve,
      };
    }
  } finally {
    await server.close();
  }
  const document = {
    about: "Measured by scripts/engine/sweep.ts through the engine (not through LMStrix).",
    command: `deno task engine:sweep --seeds ${seeds} --budget ${budget}`,
    budget,
    seeds,
    reserve: RESERVE_TOKENS,
    measuredAt: new Date().toISOString(),
    seconds: Math.round((Date.now() - started) / 1000),
    models: result,
  };
  await Deno.writeTextFile(out, JSON.stringify(document, null, 2) + "\n");
  log(`wrote ${out} (${document.seconds} s)`);
  if (args.includes("--write")) {
    for (const { path, text } of await curveDocs(new URL("../../", import.meta.url))) {
      await Deno.writeTextFile(path, text);
      log(`wrote the curve into ${path.pathname}`);
    }
  }
}

if (import.meta.main) await main(Deno.args);

/**
 * The bench's "real" regime: the search and the plain correct bisection (`plainBisection`) on the
 * real engine (`scripts/engine/`: llama.cpp behind LM Studio's protocol) serving the fixture
 * models, timed by the wall clock, with the guardrail on (quick refusals from the engine's
 * estimate) and off (real allocation failures, and the crashes they cause). Beside them the
 * lower bound: the unavoidable steps of `lower_bound.ts` for the truth the engine sweep measured
 * (`tests/fixtures/engine_truth.json`), executed on the same engine and timed, so that it is
 * priced with the engine's own costs rather than the emulator's.
 *
 * @module
 */

import { connectLmStudio } from "../../src/lmstudio/client.ts";
import { LmStudioProbe } from "../../src/probe/lmstudio_probe.ts";
import { Haystack, SANITY_PROMPT } from "../../src/probe/haystack.ts";
import { RESERVE_TOKENS } from "../../src/contract.ts";
import {
  type SearchConfig,
  searchContextLimits,
  type SearchResult,
} from "../../src/search/context_search.ts";
import { lowerBoundSteps, type TrueLimits } from "./lower_bound.ts";
import { plainBisection } from "./reference_search.ts";
import { startEngine } from "../engine/server.ts";
import type { EngineBackend, Guardrail } from "../engine/backend.ts";
import type { EngineModel } from "../engine/catalogue.ts";

const ROOT = new URL("../../", import.meta.url);

interface Truth {
  budget: number;
  models: Record<string, {
    loadable: Record<Guardrail, { loads: number | null; fails: number | null }>;
    curve: Array<{ context: number; rate: number }>;
  }>;
}

/** Settings of the real regime: the engine tests' (context sizes in llama.cpp's steps). */
function config(declared: number): SearchConfig {
  return { declared, minContext: 512, precision: 256, reserve: RESERVE_TOKENS };
}

/** The measured limits: the largest size that loaded, the largest rung passing 80 %. */
function truthOf(truth: Truth["models"][string], guardrail: Guardrail): TrueLimits {
  const loadable = truth.loadable[guardrail].loads;
  const passing = truth.curve.filter((p) => p.rate >= 0.8 && p.context <= (loadable ?? 0));
  return { loadable, working: passing.at(-1)?.context ?? null };
}

/** Runs the lower bound's steps on the engine; wall-clock milliseconds. */
async function lowerBoundRun(
  backend: EngineBackend,
  model: EngineModel,
  truth: TrueLimits,
  settings: SearchConfig,
): Promise<number> {
  const started = performance.now();
  let instance = null;
  for (const step of lowerBoundSteps(truth, settings)) {
    if (step.kind === "load") {
      if (instance !== null) await backend.unload(instance);
      instance = null;
      try {
        instance = await backend.load(model, step.context);
      } catch {
        // A refusal: what it cost is what counts.
      }
    } else if (instance !== null && step.kind === "sanity") {
      await backend.complete(instance, SANITY_PROMPT, { maxTokens: 16, temperature: 0 });
    } else if (instance !== null && step.kind === "needle") {
      const count = async (text: string) => (await backend.tokenize(model, text)).length;
      const prompt = await new Haystack(7).build(Math.max(400, step.promptTokens), 0.5, count)
        .catch(() => null);
      if (prompt !== null) {
        await backend.complete(instance, prompt.prompt, { maxTokens: 64, temperature: 0 });
      }
    }
  }
  if (instance !== null) await backend.unload(instance);
  return performance.now() - started;
}

/** One algorithm on one model, by the wall clock. */
async function timed(
  url: string,
  key: string,
  settings: SearchConfig,
  algorithm: (config: SearchConfig, probe: LmStudioProbe) => Promise<SearchResult>,
): Promise<{ ms: number; result: SearchResult }> {
  const lms = await connectLmStudio(url);
  try {
    const probe = new LmStudioProbe(lms, key, { seed: 7, runId: "bench-real" });
    const started = performance.now();
    const result = await algorithm(settings, probe);
    await probe.unload();
    return { ms: performance.now() - started, result };
  } finally {
    await lms.close();
  }
}

/**
 * Prints the real regime's table (markdown, like the emulated regimes'). Returns false, with a
 * line on stderr, when the engine cannot start here (no Node, no npm).
 */
export async function benchReal(): Promise<boolean> {
  let truth: Truth;
  try {
    truth = JSON.parse(await Deno.readTextFile(new URL("tests/fixtures/engine_truth.json", ROOT)));
  } catch (error) {
    console.error(`real regime skipped: no measured truth: ${(error as Error).message}`);
    return false;
  }
  const rows: string[][] = [];
  for (const guardrail of ["on", "off"] as const) {
    let server;
    try {
      server = await startEngine({
        models: new URL("tests/fixtures/models", ROOT).pathname,
        guardrail,
        memoryBudget: truth.budget,
      });
    } catch (error) {
      console.error(`real regime skipped: the engine does not start: ${(error as Error).message}`);
      return false;
    }
    try {
      for (const model of server.backend.models) {
        const known = truth.models[model.modelKey];
        if (known === undefined) continue;
        const settings = config(model.gguf.declaredContext);
        const limits = truthOf(known, guardrail);
        const ours = await timed(server.url, model.modelKey, settings, searchContextLimits);
        const ref = await timed(server.url, model.modelKey, settings, plainBisection);
        const lb = await lowerBoundRun(server.backend, model, limits, settings);
        const loads = (r: SearchResult) =>
          r.attempts.filter((a) => a.action === "load" || a.action === "check").length;
        const shown = (n: number | null) => n === null ? "-" : String(n);
        rows.push([
          `${model.modelKey} (guardrail ${guardrail})`,
          `${shown(ours.result.loadable)} / ${shown(ours.result.working)}`,
          `${shown(limits.loadable)} / ${shown(limits.working)}`,
          (ours.ms / 1000).toFixed(1),
          String(loads(ours.result)),
          `${shown(ref.result.loadable)} / ${shown(ref.result.working)}`,
          (ref.ms / 1000).toFixed(1),
          String(loads(ref.result)),
          (lb / 1000).toFixed(1),
        ]);
      }
    } finally {
      await server.close();
    }
  }
  console.log("\nRegime real: llama.cpp behind LM Studio's protocol (wall clock, seconds)\n");
  console.log(
    "| model | ours: loadable / working | measured | ours s | ours loads | bisection: loadable / " +
      "working | bisection s | bisection loads | lower bound s |",
  );
  console.log("|---|---|---|---:|---:|---|---:|---:|---:|");
  for (const row of rows) console.log(`| ${row.join(" | ")} |`);
  return true;
}

if (import.meta.main) await benchReal();

/**
 * `deno task bench`: the context search against the reference algorithm of the original plan,
 * on the demo fleet, in the emulator's virtual time.
 *
 * Both algorithms drive the real adapter and the real SDK over a socket to the LM Studio emulator,
 * one model at a time on a reset emulator, with the same probe (needle prompts built to exact
 * token counts). For each model it prints loads, prompt tokens, virtual time and the error of
 * each reported number against the profile's truth, next to the reference's figures and the
 * lower bound (the least work that proves the limits, priced with the emulator's cost model), and
 * the totals, with the targets: at most half the reference's time, at most 40 % of its loads,
 * every number right. A second table shows where the search's time goes.
 *
 * Usage: deno task bench [--profiles FILE] [--precision N] [--trace]
 *   --trace  prints every attempt of the search, model by model.
 */

import { parseArgs } from "node:util";
import { connectLmStudio } from "../src/lmstudio/client.ts";
import { LmStudioProbe } from "../src/probe/lmstudio_probe.ts";
import {
  type Attempt,
  type SearchConfig,
  searchContextLimits,
  type SearchResult,
} from "../src/search/context_search.ts";
import { lowerBound, type LowerBoundStep, lowerBoundSteps } from "./bench/lower_bound.ts";
import { referenceSearch } from "./bench/reference_search.ts";
import { DEFAULT_MIN_CONTEXT, defaultPrecision, RESERVE_TOKENS } from "../src/lmstrix.ts";
import { type ModelProfile, profileTruth } from "./emulator/profile.ts";
import { loadMs, prefillMs, TIMING } from "./emulator/timing.ts";
import { DEMO_FLEET_URL, readProfilesFile } from "./emulator/validation.ts";
import { type Emulator, startEmulator } from "./emulator/server.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    profiles: { type: "string" },
    precision: { type: "string" },
    trace: { type: "boolean", default: false },
  },
});
const profiles = (await readProfilesFile(values.profiles ?? DEMO_FLEET_URL)).filter((p) =>
  p.type === "llm"
);

/** What one run of an algorithm on one model cost, from the emulator's statistics. */
interface Run {
  loadable: number | null;
  working: number | null;
  loads: number;
  /** Loads that ended with the model loaded (the expensive ones). */
  loadsOk: number;
  promptTokens: number;
  prefilledTokens: number;
  predictions: number;
  virtualMs: number;
  /** Virtual time in loads (successful and refused). */
  loadMs: number;
  /** Virtual time in predictions (prefill, generation, overhead). */
  predictMs: number;
  /** Virtual time in token counting and unloads (the rest of the clock). */
  otherMs: number;
  tokenCounts: number;
  loadableOk: boolean;
  workingOk: boolean;
  attempts: Attempt[];
}

type Algorithm = (config: SearchConfig, probe: LmStudioProbe) => Promise<SearchResult>;

async function run(
  emulator: Emulator,
  profile: ModelProfile,
  config: SearchConfig,
  algorithm: Algorithm,
): Promise<Run> {
  emulator.reset();
  const lms = await connectLmStudio(emulator.url);
  try {
    const probe = new LmStudioProbe(lms, profile.modelKey, { seed: 7, runId: "bench" });
    const result = await algorithm(config, probe);
    await probe.unload();
    const stats = emulator.stats();
    if (stats.loaded.length > 0) throw new Error(`${profile.modelKey}: a model was left loaded`);
    const truth = profileTruth(profile);
    const p = config.precision;
    const loadTime = stats.loads.reduce((sum, load) => sum + load.virtualMs, 0);
    const predictTime = stats.predictions.reduce(
      (sum, prediction) => sum + prediction.virtualMs,
      0,
    );
    return {
      loadable: result.loadable,
      working: result.working,
      loads: stats.loads.length,
      loadsOk: stats.loads.filter((load) => load.ok).length,
      promptTokens: stats.predictions.reduce((sum, prediction) => sum + prediction.promptTokens, 0),
      prefilledTokens: stats.predictions.reduce((sum, p) => sum + p.prefilledTokens, 0),
      predictions: stats.predictions.length,
      virtualMs: stats.virtualMs,
      loadMs: loadTime,
      predictMs: predictTime,
      otherMs: stats.virtualMs - loadTime - predictTime,
      tokenCounts: stats.tokenCounts,
      loadableOk: result.loadable !== null && result.loadable <= truth.loadable &&
        result.loadable >= truth.loadable - p,
      workingOk: result.working !== null && result.working <= truth.working + config.reserve &&
        result.working >= truth.workingFloor - p,
      attempts: result.attempts,
    };
  } finally {
    await lms.close();
  }
}

/**
 * Virtual time of the lower bound's steps under the emulator's cost model: loads (a failing one
 * is refused, or for a fitting model loads at the fitted size), unloads and prefill. Generation,
 * prediction overhead and token counting are left out, so it stays a bound.
 */
function lowerBoundMs(profile: ModelProfile, steps: LowerBoundStep[]): number {
  let ms = 0;
  for (const step of steps) {
    if (step.kind === "needle") ms += prefillMs(profile, step.cachedTokens, step.promptTokens);
    else if (step.ok) ms += loadMs(profile, step.context) + TIMING.unloadMs;
    else if (profile.fitAbove !== undefined && step.context > profile.fitAbove) {
      ms += loadMs(profile, profile.fitAbove) + TIMING.unloadMs;
    } else ms += TIMING.refusedLoadMs;
  }
  return ms;
}

const fmtK = (n: number) => n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : String(n);
const fmtMin = (ms: number) => `${(ms / 60_000).toFixed(2)}`;
const fmtSec = (ms: number) => `${(ms / 1000).toFixed(1)}`;
const err = (value: number | null, ok: boolean, truth: number) =>
  value === null ? "null ✗" : `${value - truth >= 0 ? "+" : ""}${value - truth}${ok ? "" : " ✗"}`;

function traceLine(a: Attempt): string {
  const what = a.action === "needle"
    ? `needle ${a.promptTokens} on ${a.context}${a.fresh ? " fresh" : ""}`
    : `${a.action} ${a.context}${
      a.actual !== undefined && a.actual !== a.context ? ` -> ${a.actual}` : ""
    }`;
  return `  ${a.phase.padEnd(8)} ${what}: ${a.outcome}`;
}

const emulator = await startEmulator({ profiles, port: 0 });
const rows: string[][] = [];
const splitRows: string[][] = [];
const totals = {
  ours: { loads: 0, loadsOk: 0, tokens: 0, prefilled: 0, ms: 0, right: 0 },
  ref: { loads: 0, loadsOk: 0, tokens: 0, prefilled: 0, ms: 0, right: 0 },
  lb: { loads: 0, tokens: 0, ms: 0 },
  split: { load: 0, predict: 0, other: 0, predictions: 0, counts: 0 },
};
let numbers = 0;
try {
  for (const profile of profiles) {
    const truth = profileTruth(profile);
    const config: SearchConfig = {
      declared: profile.declaredContext,
      minContext: Math.min(DEFAULT_MIN_CONTEXT, profile.declaredContext),
      precision: values.precision
        ? Number(values.precision)
        : defaultPrecision(profile.declaredContext),
      reserve: RESERVE_TOKENS,
    };
    const ours = await run(emulator, profile, config, (c, p) => searchContextLimits(c, p));
    const ref = await run(emulator, profile, config, referenceSearch);
    const limits = { loadable: truth.loadable, working: truth.working };
    const lb = {
      ...lowerBound(limits, config),
      ms: lowerBoundMs(profile, lowerBoundSteps(limits, config)),
    };
    if (values.trace) {
      console.log(`${profile.modelKey} (truth ${truth.loadable} / ${truth.working}):`);
      for (const attempt of ours.attempts) console.log(traceLine(attempt));
    }
    numbers += 2;
    for (const [key, r] of [["ours", ours], ["ref", ref]] as const) {
      totals[key].loads += r.loads;
      totals[key].loadsOk += r.loadsOk;
      totals[key].tokens += r.promptTokens;
      totals[key].prefilled += r.prefilledTokens;
      totals[key].ms += r.virtualMs;
      totals[key].right += Number(r.loadableOk) + Number(r.workingOk);
    }
    totals.lb.loads += lb.loads;
    totals.lb.tokens += lb.promptTokens;
    totals.lb.ms += lb.ms;
    totals.split.load += ours.loadMs;
    totals.split.predict += ours.predictMs;
    totals.split.other += ours.otherMs;
    totals.split.predictions += ours.predictions;
    totals.split.counts += ours.tokenCounts;
    rows.push([
      profile.modelKey,
      `${fmtK(truth.loadable)} / ${
        truth.workingFloor === truth.working
          ? fmtK(truth.working)
          : `${fmtK(truth.workingFloor)}-${fmtK(truth.working)}`
      }`,
      `${ours.loads}`,
      fmtK(ours.promptTokens),
      fmtMin(ours.virtualMs),
      `${err(ours.loadable, ours.loadableOk, truth.loadable)} / ${
        err(ours.working, ours.workingOk, truth.working)
      }`,
      `${ref.loads}`,
      fmtMin(ref.virtualMs),
      `${err(ref.loadable, ref.loadableOk, truth.loadable)} / ${
        err(ref.working, ref.workingOk, truth.working)
      }`,
      `${lb.loads}`,
      fmtK(lb.promptTokens),
      fmtMin(lb.ms),
      `+${fmtMin(ours.virtualMs - lb.ms)} (${(ours.virtualMs / lb.ms).toFixed(2)}x)`,
    ]);
    splitRows.push([
      profile.modelKey,
      `${ours.loadsOk} + ${ours.loads - ours.loadsOk}`,
      fmtSec(ours.loadMs),
      `${ours.predictions}`,
      fmtK(ours.prefilledTokens),
      fmtSec(ours.predictMs),
      `${ours.tokenCounts}`,
      fmtSec(ours.otherMs),
      fmtSec(ours.virtualMs),
      fmtSec(lb.ms),
    ]);
  }
} finally {
  await emulator.close();
}

rows.push([
  "TOTAL",
  "",
  `${totals.ours.loads}`,
  fmtK(totals.ours.tokens),
  fmtMin(totals.ours.ms),
  `${totals.ours.right}/${numbers} right`,
  `${totals.ref.loads}`,
  fmtMin(totals.ref.ms),
  `${totals.ref.right}/${numbers} right`,
  `${totals.lb.loads}`,
  fmtK(totals.lb.tokens),
  fmtMin(totals.lb.ms),
  `+${fmtMin(totals.ours.ms - totals.lb.ms)} (${(totals.ours.ms / totals.lb.ms).toFixed(2)}x)`,
]);
splitRows.push([
  "TOTAL",
  `${totals.ours.loadsOk} + ${totals.ours.loads - totals.ours.loadsOk}`,
  fmtSec(totals.split.load),
  `${totals.split.predictions}`,
  fmtK(totals.ours.prefilled),
  fmtSec(totals.split.predict),
  `${totals.split.counts}`,
  fmtSec(totals.split.other),
  fmtSec(totals.ours.ms),
  fmtSec(totals.lb.ms),
]);

function table(head: string[], body: string[][]): void {
  console.log(`| ${head.join(" | ")} |`);
  console.log(`|${head.map((_, i) => i === 0 ? "---" : "---:").join("|")}|`);
  for (const row of body) console.log(`| ${row.join(" | ")} |`);
}

console.log(
  "Context search vs the reference (two plain midpoint bisections over [minContext, declared],",
);
console.log(
  "reloading each step, the second judged by 2+2= alone) on the demo fleet, in emulated",
);
console.log("LM Studio minutes; error = reported - truth in tokens, ✗ where outside");
console.log("[truth - precision, truth (+ 64-token reserve for working)]. Lower bound (LB): the");
console.log(
  "least work that proves the limits (loads and prefill only, priced by the emulator).\n",
);
table([
  "model",
  "truth L / W",
  "loads",
  "prompt tok",
  "min",
  "error L / W",
  "ref loads",
  "ref min",
  "ref error L / W",
  "LB loads",
  "LB prompt tok",
  "LB min",
  "min above LB",
], rows);
console.log("\nWhere the search's time goes (virtual seconds):\n");
table([
  "model",
  "loads ok + failed",
  "load s",
  "predictions",
  "prefilled tok",
  "predict s",
  "token counts",
  "count + unload s",
  "total s",
  "LB s",
], splitRows);
const timeRatio = totals.ours.ms / totals.ref.ms;
const loadRatio = totals.ours.loads / totals.ref.loads;
const lbRatio = totals.lb.ms / totals.ref.ms;
console.log(
  `\nTime: ${(timeRatio * 100).toFixed(0)} % of the reference (target <= 50 %): ${
    timeRatio <= 0.5 ? "met" : "NOT met"
  }; the lower bound alone is ${(lbRatio * 100).toFixed(0)} % of it.`,
);
console.log(
  `Loads: ${(loadRatio * 100).toFixed(0)} % of the reference (target <= 40 %): ${
    loadRatio <= 0.4 ? "met" : "NOT met"
  }`,
);
console.log(
  `Numbers right: ${totals.ours.right}/${numbers} (reference ${totals.ref.right}/${numbers}); ` +
    `loads above the lower bound: ${totals.ours.loads - totals.lb.loads}; tokens prefilled ` +
    `${(totals.ours.prefilled / Math.max(1, totals.lb.tokens)).toFixed(2)}x the lower bound's ` +
    `prompt tokens (prompt tok counts every probe's whole length, cached prefix included).`,
);

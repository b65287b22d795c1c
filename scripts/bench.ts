/**
 * `deno task bench`: the context search against the reference algorithm of the original plan,
 * on the demo fleet, in the emulator's virtual time.
 *
 * Both algorithms drive the real adapter and the real SDK over a socket to the LM Studio emulator,
 * one model at a time on a reset emulator, with the same probe (needle prompts built to exact
 * token counts). For each model it prints loads, prompt tokens, virtual time and the error of
 * each reported number against the profile's truth, the lower bound (the least work that proves
 * the limits) and the totals, with the targets: at most half the reference's time, at most 40 %
 * of its loads, every number right.
 *
 * Usage: deno task bench [--profiles FILE] [--precision N]
 */

import { parseArgs } from "node:util";
import { connectLmStudio } from "../src/lmstudio/client.ts";
import { LmStudioProbe } from "../src/probe/lmstudio_probe.ts";
import {
  type SearchConfig,
  searchContextLimits,
  type SearchResult,
} from "../src/search/context_search.ts";
import { lowerBound } from "../src/search/lower_bound.ts";
import { referenceSearch } from "../src/search/reference_search.ts";
import { DEFAULT_MIN_CONTEXT, defaultPrecision, RESERVE_TOKENS } from "../src/lmstrix.ts";
import {
  DEMO_FLEET_URL,
  type ModelProfile,
  profileTruth,
  readProfilesFile,
} from "./emulator_profiles.ts";
import { type Emulator, startEmulator } from "./lmstudio_emulator.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { profiles: { type: "string" }, precision: { type: "string" } },
});
const profiles = (await readProfilesFile(values.profiles ?? DEMO_FLEET_URL)).filter((p) =>
  p.type === "llm"
);

interface Run {
  loadable: number | null;
  working: number | null;
  loads: number;
  promptTokens: number;
  virtualMs: number;
  loadableOk: boolean;
  workingOk: boolean;
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
    return {
      loadable: result.loadable,
      working: result.working,
      loads: stats.loads.length,
      promptTokens: stats.predictions.reduce((sum, prediction) => sum + prediction.promptTokens, 0),
      virtualMs: stats.virtualMs,
      loadableOk: result.loadable !== null && result.loadable <= truth.loadable &&
        result.loadable >= truth.loadable - p,
      workingOk: result.working !== null && result.working <= truth.working + config.reserve &&
        result.working >= truth.workingFloor - p,
    };
  } finally {
    await lms.close();
  }
}

const fmtK = (n: number) => n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : String(n);
const fmtMin = (ms: number) => `${(ms / 60_000).toFixed(1)}`;
const err = (value: number | null, ok: boolean, truth: number) =>
  value === null ? "null ✗" : `${value - truth >= 0 ? "+" : ""}${value - truth}${ok ? "" : " ✗"}`;

const emulator = await startEmulator({ profiles, port: 0 });
const rows: string[][] = [];
const totals = {
  ours: { loads: 0, tokens: 0, ms: 0, right: 0 },
  ref: { loads: 0, tokens: 0, ms: 0, right: 0 },
  lb: { loads: 0, tokens: 0 },
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
    const lb = lowerBound({ loadable: truth.loadable, working: truth.working }, config);
    numbers += 2;
    for (const [key, r] of [["ours", ours], ["ref", ref]] as const) {
      totals[key].loads += r.loads;
      totals[key].tokens += r.promptTokens;
      totals[key].ms += r.virtualMs;
      totals[key].right += Number(r.loadableOk) + Number(r.workingOk);
    }
    totals.lb.loads += lb.loads;
    totals.lb.tokens += lb.promptTokens;
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
      fmtK(ref.promptTokens),
      fmtMin(ref.virtualMs),
      `${err(ref.loadable, ref.loadableOk, truth.loadable)} / ${
        err(ref.working, ref.workingOk, truth.working)
      }`,
      `${lb.loads}`,
      fmtK(lb.promptTokens),
    ]);
  }
} finally {
  await emulator.close();
}

const head = [
  "model",
  "truth L / W",
  "loads",
  "prompt tok",
  "min",
  "error L / W",
  "ref loads",
  "ref prompt tok",
  "ref min",
  "ref error L / W",
  "lower bound loads",
  "lower bound prompt tok",
];
rows.push([
  "TOTAL",
  "",
  `${totals.ours.loads}`,
  fmtK(totals.ours.tokens),
  fmtMin(totals.ours.ms),
  `${totals.ours.right}/${numbers} right`,
  `${totals.ref.loads}`,
  fmtK(totals.ref.tokens),
  fmtMin(totals.ref.ms),
  `${totals.ref.right}/${numbers} right`,
  `${totals.lb.loads}`,
  fmtK(totals.lb.tokens),
]);
console.log(
  "Context search vs the reference (two plain bisections, reloading each step, 2+2= judge)",
);
console.log(
  "on the demo fleet, emulated LM Studio time in minutes; error = reported - truth in tokens,",
);
console.log("✗ where outside [truth - precision, truth (+ 64-token reserve for working)].\n");
console.log(`| ${head.join(" | ")} |`);
console.log(`|${head.map((_, i) => i === 0 ? "---" : "---:").join("|")}|`);
for (const row of rows) console.log(`| ${row.join(" | ")} |`);
const timeRatio = totals.ours.ms / totals.ref.ms;
const loadRatio = totals.ours.loads / totals.ref.loads;
console.log(
  `\nTime: ${(timeRatio * 100).toFixed(0)} % of the reference (target <= 50 %): ${
    timeRatio <= 0.5 ? "met" : "NOT met"
  }`,
);
console.log(
  `Loads: ${(loadRatio * 100).toFixed(0)} % of the reference (target <= 40 %): ${
    loadRatio <= 0.4 ? "met" : "NOT met"
  }`,
);
console.log(
  `Numbers right: ${totals.ours.right}/${numbers} (reference ${totals.ref.right}/${numbers}); ` +
    `loads above the lower bound: ${totals.ours.loads - totals.lb.loads}, prompt tokens ` +
    `${(totals.ours.tokens / Math.max(1, totals.lb.tokens)).toFixed(1)}x the lower bound.`,
);

/**
 * `deno task bench`: the context search against the reference algorithm of the original plan,
 * on the demo fleet, in the emulator's virtual time, under three regimes of LM Studio behaviour:
 *
 * - `a` guardrail refusals + prompt cache: every refused load is LM Studio's quick guardrail
 *   refusal, and every model reuses the prompt prefix (standard attention, guardrails on);
 * - `b` engine failures + no prompt cache: every refused load costs a full load (guardrails off,
 *   the engine fails to allocate), and no model reuses a prompt (hybrid / sliding-window models);
 * - `c` a mixed shelf: each model as the demo fleet describes it (mostly guardrails and cache,
 *   some engine and exit-code failures, some models without cache, one without a runtime).
 *
 * Both algorithms drive the real adapter and the real SDK over a socket to the LM Studio emulator,
 * one model at a time on a reset emulator, with the same probe; the probe's clock is the
 * emulator's virtual clock, so the search measures the costs the regime implies. For each model
 * it prints loads, prompt tokens, virtual time and the error of each reported number against the
 * profile's truth, next to the reference's figures and the lower bound (the least work that
 * proves the limits, priced with the emulator's cost model under the regime), then one summary
 * table over the regimes with the targets: every number right, at most half the reference's time,
 * at most 40 % of its loads, within 1.5x the lower bound's time. Then, over a prior of the truths
 * such a model can have, the least average time any search can reach (`bench/best_average.ts`)
 * against the lower bound's and the reference's averages: whether a target is out of reach for
 * every search that does not know the answer; and our search's own average over the same prior
 * (`bench/ours_average.ts`: played out on a fixed sample of truths with a probe that prices
 * what the emulator charges), against the best's, the lower bound's and the reference's on the
 * same truths: how far it is from the best possible on average.
 *
 * Usage: deno task bench [--regime a|b|c|all] [--profiles FILE] [--precision N] [--trace]
 *   --trace  prints every attempt of the search, model by model.
 */

import { parseArgs } from "node:util";
import { connectLmStudio } from "../src/lmstudio/client.ts";
import type { LmStudioProbe } from "../src/probe/lmstudio_probe.ts";
import {
  type Attempt,
  type SearchConfig,
  searchContextLimits,
  type SearchResult,
} from "../src/search/context_search.ts";
import { lowerBound, lowerBoundMs, lowerBoundSteps, profileLimits } from "./bench/lower_bound.ts";
import { averageLowerBoundMs, averageReferenceMs, bestAverage } from "./bench/best_average.ts";
import { type OursAverage, oursAverage, SAMPLE_SIZE } from "./bench/ours_average.ts";
import { PricedProbe } from "./bench/priced_probe.ts";
import { referenceSearch } from "./bench/reference_search.ts";
import { benchConfig, type Regime, REGIMES, virtualProbe } from "./bench/regimes.ts";
import { type ModelProfile, profileTruth } from "./emulator/profile.ts";
import { CANCEL_HOLD_MS, type Emulator, startEmulator } from "./emulator/server.ts";
import { DEMO_FLEET_URL, readProfilesFile } from "./emulator/validation.ts";

const USAGE = "usage: deno task bench [--regime a|b|c|all] [--profiles FILE] [--precision N] " +
  "[--trace]";

/** The options, or the usage and exit 2 (0 for --help) on anything else: no stack trace. */
function options() {
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        regime: { type: "string", default: "all" },
        profiles: { type: "string" },
        precision: { type: "string" },
        trace: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) {
      console.log(USAGE);
      Deno.exit(0);
    }
    return values;
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : error}\n${USAGE}`);
    Deno.exit(2);
  }
}
const values = options();
const fleet = (await readProfilesFile(values.profiles ?? DEMO_FLEET_URL)).filter((p) =>
  p.type === "llm"
);
const regimes = values.regime === "all" ? REGIMES : REGIMES.filter((r) => r.key === values.regime);
if (regimes.length === 0) {
  console.error(`error: --regime must be a, b, c or all, got "${values.regime}"`);
  Deno.exit(2);
}

/** What one run of an algorithm on one model cost, from the emulator's statistics. */
interface Run {
  loadable: number | null;
  working: number | null;
  /** Load requests, checks (loads cancelled once they start) included. */
  loads: number;
  /** Checks. */
  checks: number;
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
  loadableOk: boolean;
  workingOk: boolean;
  attempts: Attempt[];
  plan: string;
}

type Algorithm = (config: SearchConfig, probe: LmStudioProbe) => Promise<SearchResult>;

/** Whether `value` is right for a true limit: within the precision below it (null for none). */
function right(value: number | null, truth: number, floor: number, p: number, slack = 0): boolean {
  if (truth === 0) return value === null;
  return value !== null && value <= truth + slack && value >= floor - p;
}

async function run(
  emulator: Emulator,
  profile: ModelProfile,
  config: SearchConfig,
  algorithm: Algorithm,
): Promise<Run> {
  emulator.reset();
  const lms = await connectLmStudio(emulator.url);
  try {
    // The emulator's virtual clock is the probe's clock: the search times what the regime costs.
    const probe = virtualProbe(lms, emulator, profile.modelKey, "bench");
    const result = await algorithm(config, probe);
    await probe.unload();
    const stats = emulator.stats();
    if (stats.loaded.length > 0) throw new Error(`${profile.modelKey}: a model was left loaded`);
    const truth = profileTruth(profile);
    const p = config.precision;
    const loadTime = stats.loads.reduce((sum, load) => sum + load.virtualMs, 0);
    const predictTime = stats.predictions.reduce((sum, x) => sum + x.virtualMs, 0);
    const decisions = result.attempts.flatMap((a) => a.decision ? [a.decision] : []);
    return {
      loadable: result.loadable,
      working: result.working,
      loads: result.attempts.filter((a) => a.action === "load" || a.action === "check").length,
      checks: result.attempts.filter((a) => a.action === "check").length,
      loadsOk: stats.loads.filter((load) => load.ok).length,
      promptTokens: stats.predictions.reduce((sum, x) => sum + x.promptTokens, 0),
      prefilledTokens: stats.predictions.reduce((sum, x) => sum + x.prefilledTokens, 0),
      predictions: stats.predictions.length,
      virtualMs: stats.virtualMs,
      loadMs: loadTime,
      predictMs: predictTime,
      loadableOk: right(result.loadable, truth.loadable, truth.loadable, p),
      workingOk: right(result.working, truth.working, truth.workingFloor, p, config.reserve),
      attempts: result.attempts,
      plan: decisions.at(-1) ?? "",
    };
  } finally {
    await lms.close();
  }
}

const fmtK = (n: number) => n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : String(n);
const fmtMin = (ms: number) => `${(ms / 60_000).toFixed(2)}`;
const err = (value: number | null, ok: boolean, truth: number) =>
  value === null
    ? (ok ? "null" : "null ✗")
    : truth === 0
    ? `${value} ✗`
    : `${value - truth >= 0 ? "+" : ""}${value - truth}${ok ? "" : " ✗"}`;

function traceLine(a: Attempt): string {
  const what = a.action === "needle"
    ? `needle ${a.promptTokens} on ${a.context}${a.fresh ? " fresh" : ""}`
    : `${a.action} ${a.context}${
      a.actual !== undefined && a.actual !== a.context ? ` -> ${a.actual}` : ""
    }`;
  const decision = a.decision ? `\n             plan: ${a.decision}` : "";
  return `  ${a.phase.padEnd(8)} ${what}: ${a.outcome}${decision}`;
}

function table(head: string[], body: string[][]): void {
  console.log(`| ${head.join(" | ")} |`);
  console.log(`|${head.map((_, i) => i === 0 ? "---" : "---:").join("|")}|`);
  for (const row of body) console.log(`| ${row.join(" | ")} |`);
}

/** Totals of one regime. */
interface Totals {
  ours: { loads: number; checks: number; ms: number; right: number };
  ref: { loads: number; ms: number; right: number };
  lb: { loads: number; ms: number };
  /** Averages over the prior: the best any search can do, the lower bound, the reference. */
  avg: { best: number; lb: number; ref: number };
  /** Our search's average and the others' on the same sampled truths, summed over the fleet. */
  sampled: OursAverage;
  /** Largest relative difference of the pricing probe from the emulator on the fleet's truths. */
  drift: number;
  numbers: number;
}

const ratio = (ms: number, bound: number) => `${(ms / Math.max(1, bound)).toFixed(2)}x`;

async function runRegime(regime: Regime): Promise<Totals> {
  const profiles = fleet.map(regime.apply);
  // Checks stop a load at its first progress report: give the cancel time to arrive.
  const emulator = await startEmulator({ profiles, port: 0, cancelHoldMs: CANCEL_HOLD_MS });
  const rows: string[][] = [];
  const totals: Totals = {
    ours: { loads: 0, checks: 0, ms: 0, right: 0 },
    ref: { loads: 0, ms: 0, right: 0 },
    lb: { loads: 0, ms: 0 },
    avg: { best: 0, lb: 0, ref: 0 },
    sampled: { ours: 0, best: 0, lb: 0, ref: 0, runs: 0, exact: true, wrong: 0, worst: null },
    drift: 0,
    numbers: 0,
  };
  try {
    for (const profile of profiles) {
      const truth = profileTruth(profile);
      const config = benchConfig(profile, values.precision ? Number(values.precision) : undefined);
      const ours = await run(emulator, profile, config, (c, p) => searchContextLimits(c, p));
      // The pricing probe our averages rest on, against the emulator on this truth.
      const priced = new PricedProbe(profile);
      await searchContextLimits(config, priced);
      const drift = Math.abs(priced.ms - ours.virtualMs) / Math.max(1, ours.virtualMs);
      totals.drift = Math.max(totals.drift, drift);
      const ref = await run(emulator, profile, config, referenceSearch);
      const limits = profileLimits(profile, config);
      const lb = {
        ...lowerBound(limits, config),
        ms: lowerBoundMs(profile, lowerBoundSteps(limits, config)),
      };
      const best = bestAverage(profile, config);
      const avg = {
        best: best.ms,
        lb: averageLowerBoundMs(profile, config),
        ref: averageReferenceMs(profile, config),
      };
      const sampled = await oursAverage(profile, config);
      if (values.trace) {
        console.log(`${profile.modelKey} (truth ${truth.loadable} / ${truth.working}):`);
        for (const attempt of ours.attempts) console.log(traceLine(attempt));
        console.log(
          `  average over the prior: best ${fmtMin(best.ms)} min (loads ${fmtMin(best.loadMs)}` +
            ` + needles ${fmtMin(best.workMs)};\n    L found before any needle: ` +
            `${fmtMin(best.phasedMs)}), LB ${fmtMin(avg.lb)}, reference ${fmtMin(avg.ref)}`,
        );
        const worst = sampled.worst;
        console.log(
          `  ours over ${sampled.runs} truths: ${fmtMin(sampled.ours)} min, best on them ` +
            `${fmtMin(sampled.best)} (${ratio(sampled.ours, sampled.best)}); ${sampled.wrong} ` +
            `wrong${
              worst === null ? "" : `;\n    furthest from the best: L ${worst.truth.loadable}` +
                ` / W ${worst.truth.working}, ${fmtMin(worst.ms)} vs ${fmtMin(worst.best)} min`
            }`,
        );
      }
      totals.numbers += 2;
      for (const [key, r] of [["ours", ours], ["ref", ref]] as const) {
        totals[key].loads += r.loads;
        totals[key].ms += r.virtualMs;
        totals[key].right += Number(r.loadableOk) + Number(r.workingOk);
      }
      totals.ours.checks += ours.checks;
      totals.lb.loads += lb.loads;
      totals.lb.ms += lb.ms;
      totals.avg.best += avg.best;
      totals.avg.lb += avg.lb;
      totals.avg.ref += avg.ref;
      for (const key of ["ours", "best", "lb", "ref", "runs", "wrong"] as const) {
        totals.sampled[key] += sampled[key];
      }
      totals.sampled.exact &&= sampled.exact;
      rows.push([
        profile.modelKey,
        truth.loadable === 0
          ? "none"
          : `${fmtK(truth.loadable)} / ${
            truth.workingFloor === truth.working
              ? fmtK(truth.working)
              : `${fmtK(truth.workingFloor)}-${fmtK(truth.working)}`
          }`,
        `${ours.loads}`,
        `${ours.checks}`,
        fmtK(ours.prefilledTokens),
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
        fmtMin(lb.ms),
        ratio(ours.virtualMs, lb.ms),
        `${fmtMin(avg.best)} / ${fmtMin(avg.lb)} / ${fmtMin(avg.ref)}`,
        `${ratio(avg.best, avg.lb)} / ${ratio(avg.best, avg.ref)}`,
        `${fmtMin(sampled.ours)} (${ratio(sampled.ours, sampled.best)})`,
      ]);
    }
  } finally {
    await emulator.close();
  }
  rows.push([
    "TOTAL",
    "",
    `${totals.ours.loads}`,
    `${totals.ours.checks}`,
    "",
    fmtMin(totals.ours.ms),
    `${totals.ours.right}/${totals.numbers} right`,
    `${totals.ref.loads}`,
    fmtMin(totals.ref.ms),
    `${totals.ref.right}/${totals.numbers} right`,
    `${totals.lb.loads}`,
    fmtMin(totals.lb.ms),
    ratio(totals.ours.ms, totals.lb.ms),
    `${fmtMin(totals.avg.best)} / ${fmtMin(totals.avg.lb)} / ${fmtMin(totals.avg.ref)}`,
    `${ratio(totals.avg.best, totals.avg.lb)} / ${ratio(totals.avg.best, totals.avg.ref)}`,
    `${fmtMin(totals.sampled.ours)} (${ratio(totals.sampled.ours, totals.sampled.best)})`,
  ]);
  console.log(`\nRegime ${regime.key}: ${regime.name}\n`);
  table([
    "model",
    "truth L / W",
    "loads",
    "checks",
    "prefilled tok",
    "min",
    "error L / W",
    "ref loads",
    "ref min",
    "ref error L / W",
    "LB loads",
    "LB min",
    "vs LB",
    "avg min: best / LB / ref",
    "best vs LB / ref",
    "ours avg min (vs best)",
  ], rows);
  console.log(
    `\nOurs' averages are priced without the emulator; on these truths the price is within ` +
      `${(totals.drift * 100).toFixed(2)} %\nof the emulator's.`,
  );
  return totals;
}

const HEADER = `
Context search vs the reference (two plain midpoint bisections over [minContext, declared],
reloading each step, the second judged by 2+2= alone) on the demo fleet, in emulated LM Studio
minutes. Loads count every load request, checks (loads cancelled at their first progress
report) included. Error = reported - truth in tokens, ✗ where outside [truth - precision,
truth (+ the 64-token reserve for working)].
Lower bound (LB): the least work that proves the limits when the truth is known (a load at each
limit and a failure within the precision above it; loads, unloads, refusals, and each probe's
overhead, prefill and shortest answer, priced by the emulator).
Average (avg): over a prior of the truths such a model can have (loadable size L uniform on the
precision grid from minContext to the declared size, working size W uniform on it up to L; the
model's load, refusal, prefill and cache costs, its other behaviours dropped), the least
expected time any search can reach without knowing the truth (best, by dynamic programming;
a lower bound even for a search that mixes needles into its loads), and the averages of the
lower bound's and the reference's times. Ours: our search's average, played out on a fixed
sample of ${SAMPLE_SIZE} truths per model drawn from that prior (the whole prior where it has no
more), priced as the emulator charges; against the best, LB and reference on the same truths.`;
console.log(HEADER.trim());

const summary: string[][] = [];
const averages: string[][] = [];
const readings: string[] = [];
let allMet = true;
for (const regime of regimes) {
  const t = await runRegime(regime);
  const time = t.ours.ms / t.ref.ms;
  const loads = t.ours.loads / t.ref.loads;
  const vsLb = t.ours.ms / t.lb.ms;
  const met = t.ours.right === t.numbers && time <= 0.5 && loads <= 0.4 && vsLb <= 1.5;
  allMet &&= met;
  const { best, lb, ref } = t.avg;
  const s = t.sampled;
  averages.push([
    `${regime.key}: ${regime.name}`,
    fmtMin(best),
    fmtMin(lb),
    fmtMin(ref),
    `${(best / lb).toFixed(2)}x`,
    `${(best / ref).toFixed(2)}x`,
    fmtMin(s.ours),
    `${(s.ours / s.best).toFixed(2)}x`,
    `${(s.ours / s.lb).toFixed(2)}x`,
    `${(s.ours / s.ref).toFixed(2)}x`,
    `${s.wrong}/${s.runs}`,
  ]);
  const lbReading = best / lb > 1.5
    ? "no search can be within 1.5x of the LB on average"
    : "within 1.5x of the LB is not ruled out on average";
  const refReading = best / ref > 0.5
    ? "no search can take half the reference's time on average"
    : "half the reference's time is not ruled out on average";
  const oursReading = `ours takes ${(s.ours / s.best).toFixed(2)}x the best on its ${s.runs} ` +
    `truths (the best: ${fmtMin(s.best)} min on them)`;
  readings.push(`${regime.key}: ${lbReading};\n   ${refReading};\n   ${oursReading}.`);
  summary.push([
    `${regime.key}: ${regime.name}`,
    `${t.ours.right}/${t.numbers} (ref ${t.ref.right})`,
    `${t.ours.loads} / ${t.ref.loads} / ${t.lb.loads}`,
    `${t.ours.checks}`,
    `${fmtMin(t.ours.ms)} / ${fmtMin(t.ref.ms)} / ${fmtMin(t.lb.ms)}`,
    `${time.toFixed(2)}x`,
    `${loads.toFixed(2)}x`,
    `${vsLb.toFixed(2)}x`,
    met ? "met" : "NOT met",
  ]);
}
console.log("\nSummary (targets: every number right, time <= 0.5x and loads <= 0.4x the");
console.log("reference's, time <= 1.5x the lower bound's):\n");
table([
  "regime",
  "numbers right",
  "loads: ours / ref / LB",
  "checks",
  "virtual min: ours / ref / LB",
  "time vs ref",
  "loads vs ref",
  "time vs LB",
  "targets",
], summary);
console.log(
  allMet
    ? "\nEvery target met."
    : "\nNot every target met: see the table (and the README for why).",
);
console.log("\nOn average over the truths such models can have (sums over the fleet, min):\n");
table([
  "regime",
  "best any search",
  "average LB",
  "average ref",
  "best vs LB",
  "best vs ref",
  "ours",
  "ours vs best",
  "ours vs LB",
  "ours vs ref",
  "ours wrong",
], averages);

console.log(`\n${readings.join("\n")}`);

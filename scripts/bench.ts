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
 * Usage: deno task bench [--regime a|b|c|d|all] [--profiles FILE] [--precision N] [--trace]
 *   [--write | --render]
 *   --trace   prints every attempt of the search, model by model;
 *   --write   saves the figures (`docs/bench.json`) and writes the tables of `docs/bench.md` and
 *             the README's summary from them;
 *   --render  writes those tables again from the saved figures, without running the bench.
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
import {
  type OursAverage,
  oursAverage,
  PRIOR_KEYS,
  priorSample,
  SAMPLE_SIZE,
} from "./bench/ours_average.ts";
import { PricedProbe } from "./bench/priced_probe.ts";
import { plainBisection, referenceSearch } from "./bench/reference_search.ts";
import { benchReal } from "./bench/real.ts";
import {
  BENCH_DOC,
  BENCH_JSON,
  type BenchReport,
  fullTables,
  type PriorAverages,
  README,
  type RegimeReport,
  replaceBlock,
  summaryTable,
  verdicts,
} from "./bench/report.ts";
import { benchConfig, type Regime, REGIMES, virtualProbe } from "./bench/regimes.ts";
import { type ModelProfile, profileTruth } from "./emulator/profile.ts";
import { CANCEL_HOLD_MS, type Emulator, startEmulator } from "./emulator/server.ts";
import { DEMO_FLEET_URL, readProfilesFile } from "./emulator/validation.ts";
import { impliedLoads } from "./bench/implied_loads.ts";
import { type FloorModel, priorFloor } from "./bench/prior_floor.ts";
import { SHELF_SEED, shelfRuns, SHELVES } from "./bench/shelf_runs.ts";

const USAGE = "usage: deno task bench [--regime a|b|c|d|all] [--profiles FILE] " +
  "[--precision N] [--trace] [--write | --render]";

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
        write: { type: "boolean", default: false },
        render: { type: "boolean", default: false },
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

/** Writes the full tables and the README's summary from `report`. */
async function writeTables(report: BenchReport): Promise<void> {
  const docs = await Deno.readTextFile(BENCH_DOC);
  await Deno.writeTextFile(BENCH_DOC, replaceBlock(docs, "bench-tables", fullTables(report)));
  const readme = await Deno.readTextFile(README);
  await Deno.writeTextFile(README, replaceBlock(readme, "bench-summary", summaryTable(report)));
  console.error(`wrote the tables of ${BENCH_DOC} and ${README}'s summary`);
}

if (values.render) {
  await writeTables(JSON.parse(await Deno.readTextFile(BENCH_JSON)) as BenchReport);
  Deno.exit(0);
}
const fleet = (await readProfilesFile(values.profiles ?? DEMO_FLEET_URL)).filter((p) =>
  p.type === "llm"
);
const regimes = values.regime === "all" ? REGIMES : REGIMES.filter((r) => r.key === values.regime);
if (regimes.length === 0) {
  console.error(`error: --regime must be a, b, c, d or all, got "${values.regime}"`);
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

/**
 * Runs `algorithm` on `profile`. A check's cancel must reach the emulator within its hold (40 ms
 * of real time); on a loaded machine it may come late and the emulator loads what the check asked
 * for, a race of the bench's clock rather than a cost of the search: such a run is made again,
 * up to {@link RACE_TRIES} times (a profile that ignores cancels is run once).
 */
async function run(
  emulator: Emulator,
  profile: ModelProfile,
  config: SearchConfig,
  algorithm: Algorithm,
): Promise<Run> {
  for (let tries = 1;; tries++) {
    const result = await runOnce(emulator, profile, config, algorithm);
    if (!result.late || profile.cancelIgnored === true || tries >= RACE_TRIES) return result;
  }
}

/** Runs made again where a check's cancel lost the race with the emulator's hold. */
const RACE_TRIES = 4;

async function runOnce(
  emulator: Emulator,
  profile: ModelProfile,
  config: SearchConfig,
  algorithm: Algorithm,
): Promise<Run & { late: boolean }> {
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
      late: (result.costs.checksCompleted ?? 0) > 0,
    };
  } finally {
    await lms.close();
  }
}

const started = performance.now();
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

const ratio = (ms: number, bound: number) => `${(ms / Math.max(1, bound)).toFixed(2)}x`;

/** What a regime's averages add up to, over the fleet. */
function addAverages(into: PriorAverages, sampled: OursAverage): void {
  into.ours += sampled.ours;
  into.best += sampled.best;
  into.lb += sampled.lb;
  into.plain += sampled.plain;
  into.runs += sampled.runs;
  into.wrong += sampled.wrong;
  into.implied += sampled.implied;
}

async function runRegime(regime: Regime): Promise<RegimeReport> {
  const profiles = fleet.map(regime.apply);
  // Checks stop a load at its first progress report: give the cancel time to arrive.
  const emulator = await startEmulator({ profiles, port: 0, cancelHoldMs: CANCEL_HOLD_MS });
  const empty = (): PriorAverages => ({
    ours: 0,
    best: 0,
    lb: 0,
    plain: 0,
    runs: 0,
    wrong: 0,
    implied: 0,
  });
  const report: RegimeReport = {
    key: regime.key,
    name: regime.name,
    rows: [],
    numbers: 0,
    ours: { loads: 0, checks: 0, ms: 0, right: 0 },
    ref: { loads: 0, ms: 0, right: 0 },
    plain: { loads: 0, ms: 0, right: 0 },
    lb: { loads: 0, ms: 0 },
    averages: Object.fromEntries(PRIOR_KEYS.map((key) => [key, empty()])),
    drift: 0,
    implied: 0,
    floor: { floor: 1, lambda: 0, phased: 1, bestUniformMs: 0, bestShelfMs: 0 },
  };
  const floorModels: FloorModel[] = [];
  try {
    for (const profile of profiles) {
      const truth = profileTruth(profile);
      const config = benchConfig(profile, values.precision ? Number(values.precision) : undefined);
      floorModels.push({ profile, config });
      const ours = await run(emulator, profile, config, (c, p) => searchContextLimits(c, p));
      // The pricing probe our averages rest on, against the emulator on this truth.
      const priced = new PricedProbe(profile);
      await searchContextLimits(config, priced);
      const drift = Math.abs(priced.ms - ours.virtualMs) / Math.max(1, ours.virtualMs);
      report.drift = Math.max(report.drift, drift);
      const ref = await run(emulator, profile, config, referenceSearch);
      const plain = await run(emulator, profile, config, plainBisection);
      const limits = profileLimits(profile, config);
      const lb = {
        ...lowerBound(limits, config),
        ms: lowerBoundMs(profile, lowerBoundSteps(limits, config)),
      };
      const sampled: Record<string, OursAverage> = {};
      for (const key of PRIOR_KEYS) {
        sampled[key] = await oursAverage(profile, config, priorSample(config, key), key);
        addAverages(report.averages[key]!, sampled[key]!);
      }
      const uniform = sampled.uniform!;
      if (values.trace) {
        console.log(`${profile.modelKey} (truth ${truth.loadable} / ${truth.working}):`);
        for (const attempt of ours.attempts) console.log(traceLine(attempt));
        const worst = uniform.worst;
        console.log(
          `  ours over ${uniform.runs} truths: ${fmtMin(uniform.ours)} min, best on them ` +
            `${fmtMin(uniform.best)} (${ratio(uniform.ours, uniform.best)}); ${uniform.wrong} ` +
            `wrong${
              worst === null ? "" : `;\n    furthest from the best: L ${worst.truth.loadable}` +
                ` / W ${worst.truth.working}, ${fmtMin(worst.ms)} vs ${fmtMin(worst.best)} min`
            }`,
        );
      }
      report.numbers += 2;
      for (const [key, r] of [["ours", ours], ["ref", ref], ["plain", plain]] as const) {
        report[key].loads += r.loads;
        report[key].ms += r.virtualMs;
        report[key].right += Number(r.loadableOk) + Number(r.workingOk);
      }
      report.ours.checks += ours.checks;
      report.implied += impliedLoads(ours.attempts).length;
      report.lb.loads += lb.loads;
      report.lb.ms += lb.ms;
      report.rows.push([
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
        fmtMin(ours.virtualMs),
        `${err(ours.loadable, ours.loadableOk, truth.loadable)} / ${
          err(ours.working, ours.workingOk, truth.working)
        }`,
        `${plain.loads}`,
        fmtMin(plain.virtualMs),
        fmtMin(ref.virtualMs),
        `${err(ref.loadable, ref.loadableOk, truth.loadable)} / ${
          err(ref.working, ref.workingOk, truth.working)
        }`,
        fmtMin(lb.ms),
        `${fmtMin(uniform.ours)} / ${fmtMin(uniform.best)} / ${fmtMin(uniform.plain)}`,
      ]);
    }
  } finally {
    await emulator.close();
  }
  report.floor = priorFloor(floorModels);
  report.shelves = {};
  for (const key of PRIOR_KEYS) {
    const learned = await shelfRuns(floorModels, key);
    const fixed = await shelfRuns(floorModels, key, SHELVES, SHELF_SEED, false);
    report.shelves[key] = {
      learned: learned.ours / learned.best,
      fixed: fixed.ours / fixed.best,
      runs: learned.runs,
      lastShare: learned.lastShare,
    };
  }
  const u = report.averages.uniform!;
  report.rows.push([
    "TOTAL",
    "",
    `${report.ours.loads}`,
    `${report.ours.checks}`,
    fmtMin(report.ours.ms),
    `${report.ours.right}/${report.numbers} right`,
    `${report.plain.loads}`,
    fmtMin(report.plain.ms),
    fmtMin(report.ref.ms),
    `${report.ref.right}/${report.numbers} right`,
    fmtMin(report.lb.ms),
    `${fmtMin(u.ours)} / ${fmtMin(u.best)} / ${fmtMin(u.plain)}`,
  ]);
  console.error(
    `regime ${regime.key} done; averages priced without the emulator, within ` +
      `${(report.drift * 100).toFixed(2)} % of it on the fleet's truths`,
  );
  return report;
}

const HEADER = `
Context search on the demo fleet, in emulated LM Studio minutes, against:
- plain: the plain correct bisection (two midpoint bisections over [minContext, declared], a
  fresh load at each step, the second judged by a needle filling the loaded context);
- ref: the original plan's reference (the same, the second judged by 2+2= alone: cheap, and
  wrong wherever a model loads and chats but loses the needle);
- LB: the least work that proves the limits when the truth is known;
- best: over a prior of the truths such a model can have, the least average time any search
  can reach without knowing the truth (dynamic programming), on the same ${SAMPLE_SIZE} sampled
  truths per model that ours and plain are played out on (priced as the emulator charges).
Loads count every load request, checks included. Error = reported - truth, in tokens.`;
console.log(HEADER.trim());

const report: BenchReport = { regimes: [], sample: SAMPLE_SIZE };
for (const regime of regimes) report.regimes.push(await runRegime(regime));
console.log(`\n${fullTables(report)}\n`);
console.log(`Summary (the README's table):\n\n${summaryTable(report)}\n`);
const missed = verdicts(report).filter((v) => !v.met);
console.log(
  missed.length === 0
    ? "Every target met."
    : `Not met: ${missed.map((v) => `${v.regime} ${v.target} (${v.value})`).join("; ")}.`,
);
// The real regime: the same searches on llama.cpp, by the wall clock (scripts/bench/real.ts).
if (values.regime === "all" && !values.profiles) await benchReal();
console.log(`Bench took ${((performance.now() - started) / 1000).toFixed(0)} s.`);
if (values.write) {
  if (regimes.length !== REGIMES.length || values.profiles || values.precision) {
    console.error("error: --write needs the whole default bench (no --regime, --profiles, ...)");
    Deno.exit(2);
  }
  await Deno.writeTextFile(BENCH_JSON, JSON.stringify(report, null, 2) + "\n");
  await writeTables(report);
}

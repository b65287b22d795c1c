/**
 * `deno task soak [--runs N] [--seed S]`: a soak test of interrupts and faults. It starts the LM
 * Studio emulator with the demo fleet on a free loopback port, measures the fleet once with an
 * undisturbed `test --all`, then N times (default 20), in a fresh LM Studio home, runs the real
 * CLI's `test --all` while arming one-shot connection drops (`POST /__emulator/faults`) and sending
 * SIGINT at random moments, rerunning until a run finishes. Each time it checks that:
 *
 * - the final registry's numbers equal the undisturbed run's,
 * - nothing is left loaded in LM Studio,
 * - no run took more extra loads than one per interruption plus one per dropped load (an
 *   interrupt repeats at most the attempt it stopped; a dropped load is retried once).
 *
 * It prints its figures (runs, attempts, interrupts, drops, extra loads, mismatches) and exits 1
 * when a check failed. Everything random comes from one seeded PRNG; every loop is bounded.
 *
 * @module
 */

import { join } from "node:path";
import { seededRandom } from "../src/random.ts";
import { DEMO_FLEET_URL, readProfilesFile } from "./emulator/validation.ts";
import { type Emulator, startEmulator } from "./emulator/server.ts";

const ROOT = new URL("../", import.meta.url);
const FLAGS = (await Deno.readTextFile(new URL("scripts/permissions.flags", ROOT))).trim()
  .split(/\s+/);
/** Attempts a soak run may take before it counts as stuck. */
const MAX_ATTEMPTS = 30;
/** Interrupts per soak run; after that, attempts run undisturbed so that the run finishes. */
const MAX_INTERRUPTS = 6;

const USAGE = `Usage: deno task soak [--runs N] [--seed S]

  --runs N   soak runs (default 20)
  --seed S   seed of the random interrupts and drops (default 1)`;

function parseArgs(args: string[]): { runs: number; seed: number } | null {
  let runs = 20;
  let seed = 1;
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i]!.includes("=") ? args[i]!.split("=", 2) : [args[i], undefined];
    const value = Number(inline ?? args[++i]);
    if (!Number.isSafeInteger(value) || value < 0) return null;
    if (flag === "--runs" && value >= 1) runs = value;
    else if (flag === "--seed") seed = value;
    else return null;
  }
  return { runs, seed };
}

type Numbers = Record<string, { loadable: number | null; working: number | null; status: string }>;

async function readNumbers(home: string): Promise<Numbers> {
  const text = await Deno.readTextFile(join(home, "lmstrix", "models.json"));
  const models = (JSON.parse(text) as {
    models: Record<
      string,
      {
        type: string;
        status: string;
        loadableContext: number | null;
        workingContext: number | null;
      }
    >;
  }).models;
  const numbers: Numbers = {};
  for (const [id, record] of Object.entries(models)) {
    if (record.type !== "llm") continue;
    numbers[id] = {
      loadable: record.loadableContext,
      working: record.workingContext,
      status: record.status,
    };
  }
  return numbers;
}

/** Spawns the CLI as users run it; returns the child and its collected stderr. */
function spawnCli(emulator: Emulator, home: string, args: string[]) {
  const child = new Deno.Command("deno", {
    args: ["run", ...FLAGS, new URL("main.ts", ROOT).pathname, ...args],
    cwd: ROOT.pathname,
    env: { NO_COLOR: "1", LMSTRIX_SERVER: emulator.url, LMSTRIX_LMSTUDIO_DIR: home },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  return { child, done: Promise.all([child.status, stderr]) };
}

async function runToEnd(emulator: Emulator, home: string, args: string[]): Promise<number> {
  const { done } = spawnCli(emulator, home, args);
  const [status, stderr] = await done;
  if (status.code !== 0) {
    throw new Error(`lmstrix ${args.join(" ")}: exit ${status.code}\n${stderr}`);
  }
  return status.code;
}

async function armDrop(emulator: Emulator, kind: "dropNextLoad" | "dropNextPredict") {
  const response = await fetch(`${emulator.httpUrl}/__emulator/faults`, {
    method: "POST",
    body: JSON.stringify({ [kind]: true }),
  });
  await response.body?.cancel();
  if (!response.ok) throw new Error(`arming ${kind}: HTTP ${response.status}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Figures of the whole soak. */
interface Figures {
  runs: number;
  attempts: number;
  interrupts: number;
  dropsArmed: number;
  dropsHit: number;
  extraLoads: number;
  maxExtraLoadsPerRun: number;
  mismatches: string[];
  leftovers: number;
  overBudget: string[];
  unexpectedExits: string[];
}

async function main(args: string[]): Promise<number> {
  const parsed = parseArgs(args);
  if (parsed === null) {
    console.error(USAGE);
    return 2;
  }
  const { runs, seed } = parsed;
  const random = seededRandom(seed);
  // The fleet's model that loads nowhere fails every run by design (exit 1): nothing to soak.
  const profiles = (await readProfilesFile(DEMO_FLEET_URL)).filter((p) => p.noRuntime !== true);
  const emulator = await startEmulator({ profiles, port: 0 });
  const base = await Deno.makeTempDir({ prefix: "lmstrix-soak-" });
  console.log(`LM Studio emulator with ${profiles.length} demo models on ${emulator.url}`);
  const figures: Figures = {
    runs,
    attempts: 0,
    interrupts: 0,
    dropsArmed: 0,
    dropsHit: 0,
    extraLoads: 0,
    maxExtraLoadsPerRun: 0,
    mismatches: [],
    leftovers: 0,
    overBudget: [],
    unexpectedExits: [],
  };
  try {
    // The reference: an undisturbed run.
    const cleanHome = join(base, "clean");
    // lmstrix refuses an LM Studio home that does not exist (it would be a misspelling).
    await Deno.mkdir(cleanHome);
    await runToEnd(emulator, cleanHome, ["scan", "-q"]);
    emulator.reset();
    const started = performance.now();
    await runToEnd(emulator, cleanHome, ["test", "--all", "-q"]);
    const cleanMs = performance.now() - started;
    const cleanLoads = emulator.stats().loads.length;
    const clean = await readNumbers(cleanHome);
    console.log(
      `Undisturbed run: ${cleanLoads} loads, ${Math.round(cleanMs)} ms. ` +
        `Soaking ${runs} runs (seed ${seed})...`,
    );

    for (let run = 1; run <= runs; run++) {
      const home = join(base, `run-${run}`);
      await Deno.mkdir(home);
      emulator.reset();
      await runToEnd(emulator, home, ["scan", "-q"]);
      let interrupts = 0;
      let finished = false;
      /** Where each attempt started in the load list, and how it ended: for the diagnosis. */
      const marks: { at: number; code: number; interruptAt: number | null }[] = [];
      for (let attempt = 1; attempt <= MAX_ATTEMPTS && !finished; attempt++) {
        figures.attempts++;
        const { child, done } = spawnCli(emulator, home, ["test", "--all", "-q"]);
        const interrupt = interrupts < MAX_INTERRUPTS && random() < 0.8;
        // A moment anywhere in the run: during startup, a load, a prediction, a save.
        const interruptAt = random() * cleanMs * 1.2;
        const drops = Array.from({ length: Math.floor(random() * 3) }, () => ({
          at: random() * cleanMs,
          kind: random() < 0.5 ? "dropNextLoad" as const : "dropNextPredict" as const,
        }));
        let exited = false;
        const ended = done.finally(() => exited = true);
        const disturbances = [
          ...drops.map(async (drop) => {
            await sleep(drop.at);
            if (exited) return;
            await armDrop(emulator, drop.kind);
            figures.dropsArmed++;
          }),
          (async () => {
            if (!interrupt) return;
            await sleep(interruptAt);
            if (exited) return;
            try {
              child.kill("SIGINT");
              interrupts++;
            } catch {
              // It ended just now.
            }
          })(),
        ];
        const loadsBefore = emulator.stats().loads.length;
        const [status, stderr] = await ended;
        await Promise.all(disturbances);
        marks.push({
          at: loadsBefore,
          code: status.code,
          interruptAt: interrupt ? Math.round(interruptAt) : null,
        });
        if (status.code === 0) finished = true;
        else if (status.code !== 130) {
          figures.unexpectedExits.push(
            `run ${run} attempt ${attempt}: exit ${status.code}: ${
              stderr.trim().split("\n").slice(-2).join(" / ")
            }`,
          );
        }
      }
      const stats = emulator.stats();
      figures.interrupts += interrupts;
      const dropLoads = stats.loads.filter((l) => l.error === "fault: drop").length;
      figures.dropsHit += dropLoads +
        stats.predictions.filter((p) => p.error === "fault: drop").length;
      figures.leftovers += stats.loaded.length;
      const extra = stats.loads.length - cleanLoads;
      figures.extraLoads += Math.max(0, extra);
      figures.maxExtraLoadsPerRun = Math.max(figures.maxExtraLoadsPerRun, extra);
      if (extra > interrupts + dropLoads) {
        figures.overBudget.push(
          `run ${run}: ${extra} extra loads for ${interrupts} interrupts and ${dropLoads} dropped loads`,
        );
        // The load sequence with the attempt boundaries, to compare with the undisturbed one.
        const lines = stats.loads.map((l, i) => {
          const mark = marks.filter((m) => m.at === i).map((m) =>
            `--- attempt (exit ${m.code}${
              m.interruptAt === null ? "" : `, SIGINT at ${m.interruptAt} ms`
            })\n`
          ).join("");
          return `${mark}    ${l.modelKey} ${l.askedContext} ${
            l.ok ? "ok" : l.error?.slice(0, 30)
          }`;
        });
        console.log(`run ${run} loads:\n${lines.join("\n")}`);
      }
      if (!finished) {
        figures.mismatches.push(`run ${run}: not finished in ${MAX_ATTEMPTS} attempts`);
      } else {
        const numbers = await readNumbers(home);
        for (const [id, expected] of Object.entries(clean)) {
          const got = numbers[id];
          if (
            got?.status !== expected.status || got.loadable !== expected.loadable ||
            got.working !== expected.working
          ) {
            figures.mismatches.push(
              `run ${run}: ${id}: ${JSON.stringify(got)} instead of ${JSON.stringify(expected)}`,
            );
          }
        }
      }
      console.log(
        `run ${run}: ${interrupts} interrupts, ${dropLoads} dropped loads, ` +
          `${stats.loads.length} loads (${extra >= 0 ? "+" : ""}${extra}), ` +
          `${stats.loaded.length} left loaded`,
      );
      // One-shot faults armed but never hit must not spill into the next run.
      emulator.reset();
    }
  } finally {
    await emulator.close();
    await Deno.remove(base, { recursive: true }).catch(() => {});
  }
  return report(figures);
}

function report(f: Figures): number {
  const problems = [...f.mismatches, ...f.overBudget, ...f.unexpectedExits];
  console.log(
    [
      "",
      `runs:             ${f.runs}`,
      `attempts:         ${f.attempts}`,
      `interrupts:       ${f.interrupts} (SIGINT at random moments)`,
      `drops:            ${f.dropsHit} hit of ${f.dropsArmed} armed`,
      `extra loads:      ${f.extraLoads} in all, at most ${f.maxExtraLoadsPerRun} in one run`,
      `mismatches:       ${f.mismatches.length}`,
      `over budget:      ${f.overBudget.length}`,
      `unexpected exits: ${f.unexpectedExits.length}`,
      `left loaded:      ${f.leftovers}`,
    ].join("\n"),
  );
  for (const problem of problems) console.log(`  ${problem}`);
  const ok = problems.length === 0 && f.leftovers === 0;
  console.log(ok ? "\nSoak passed." : "\nSoak FAILED.");
  return ok ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

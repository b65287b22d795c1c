/**
 * `deno task soak [--runs N] [--seed S]`: a soak test of interrupts and faults. It starts the LM
 * Studio emulator with the demo fleet on a free loopback port, behind a proxy that can restart
 * it, measures the fleet once with an undisturbed `test --all`, then N times (default 20), in a
 * fresh LM Studio home, runs the real CLI's `test --all` while arming one-shot connection drops
 * (`POST /__emulator/faults`) and, at random moments, one disturbance per attempt: SIGINT to the
 * CLI; Ctrl-C as a terminal sends it under `deno task start` (SIGINT to the CLI and to `deno task`
 * at once); SIGHUP; SIGKILL during a load (a hung load, so the kill lands in it); or LM Studio
 * restarting (every connection dropped, the port refusing for 1.3 s). It reruns until a run
 * finishes. A run gets at most one SIGKILL in a load: a second death in the same load counts as
 * a crash by design. Each time it checks that:
 *
 * - the final registry's numbers equal the undisturbed run's,
 * - nothing is left loaded in LM Studio,
 * - no run took more extra loads than one per signal or kill, two per restart, plus one per
 *   dropped load (an interrupt repeats at most the attempt it stopped; a load the run died in is
 *   loaded again once; a dropped load is retried once).
 *
 * After each run, the apply/undo cycle of `soak_apply.ts`: config files for most models and the
 * id-collision shelf, `apply --all` and `apply --undo --all` under random SIGKILL and SIGINT,
 * then every LM Studio config must be byte-identical to before the first apply.
 *
 * It prints its figures (runs, attempts, interrupts, drops, extra loads, mismatches, the apply
 * cycles' kills and configs not restored) and exits 1 when a check failed. Everything random comes from one seeded PRNG; every loop is bounded.
 *
 * @module
 */

import { join } from "node:path";
import { seededRandom } from "../src/random.ts";
import { DEMO_FLEET_URL, readProfilesFile } from "./emulator/validation.ts";
import { type Emulator, startEmulator } from "./emulator/server.ts";
import { type Proxy, startProxy } from "../tests/support/proxy.ts";
import { applyCycle, COLLISION_IDS, prepareApplyShelf } from "./soak_apply.ts";

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

/**
 * Spawns the CLI as users run it (`deno run` with the product's flags, or `deno task start` as a
 * person types it), against `server`; returns the child and its collected stderr.
 */
function spawnCli(server: string, home: string, args: string[], viaTask = false) {
  const child = new Deno.Command("deno", {
    args: viaTask
      ? ["task", "--quiet", "start", ...args]
      : ["run", ...FLAGS, new URL("main.ts", ROOT).pathname, ...args],
    cwd: ROOT.pathname,
    env: { NO_COLOR: "1", LMSTRIX_SERVER: server, LMSTRIX_LMSTUDIO_DIR: home },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  return { child, done: Promise.all([child.status, stderr]) };
}

/** The pid of the CLI holding the lock of `home`, if one does. */
function lockHolder(home: string): number | undefined {
  try {
    const pid = JSON.parse(Deno.readTextFileSync(join(home, "lmstrix", "lmstrix.lock"))).pid;
    return typeof pid === "number" ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Sends `signal` to all of `pids` at once, as a terminal signals its process group. */
async function signalGroup(pids: number[], signal: Deno.Signal): Promise<void> {
  const code = pids.map((pid) => `try { Deno.kill(${pid}, "${signal}"); } catch {}`).join(" ");
  await new Deno.Command("deno", { args: ["eval", code], stdout: "null", stderr: "null" })
    .output();
}

/** What disturbs one attempt. */
type Disturbance = "SIGINT" | "group SIGINT" | "SIGHUP" | "SIGKILL in a load" | "restart";

/** Picks one attempt's disturbance, or none. */
function pickDisturbance(random: () => number): Disturbance | null {
  const r = random();
  return r < 0.25
    ? "SIGINT"
    : r < 0.4
    ? "group SIGINT"
    : r < 0.5
    ? "SIGHUP"
    : r < 0.62
    ? "SIGKILL in a load"
    : r < 0.8
    ? "restart"
    : null;
}

/** Exit codes an attempt may end with under each disturbance (0: it finished first). */
const EXPECTED_EXITS: Record<Disturbance, number[]> = {
  "SIGINT": [0, 130],
  "group SIGINT": [0, 130],
  "SIGHUP": [0, 129],
  "SIGKILL in a load": [0, 137],
  "restart": [0],
};

/**
 * Carries out `disturbance` on the attempt `child` (started `viaTask` or not) after `delayMs`,
 * unless it has exited; returns whether it was carried out.
 */
async function disturb(
  disturbance: Disturbance,
  delayMs: number,
  attempt: { child: Deno.ChildProcess; exited: () => boolean; home: string; loadsBefore: number },
  emulator: Emulator,
  proxy: Proxy,
): Promise<boolean> {
  await sleep(delayMs);
  if (attempt.exited()) return false;
  try {
    switch (disturbance) {
      case "SIGINT":
      case "SIGHUP":
        attempt.child.kill(disturbance);
        return true;
      case "group SIGINT": {
        const cli = lockHolder(attempt.home);
        await signalGroup(
          cli === undefined ? [attempt.child.pid] : [cli, attempt.child.pid],
          "SIGINT",
        );
        return true;
      }
      case "SIGKILL in a load": {
        await armFault(emulator, "hangNextLoad", true);
        const hung = () => emulator.stats().loads.some((l) => l.error === "fault: hang");
        for (let waited = 0; !hung() && !attempt.exited() && waited < 30_000; waited += 10) {
          await sleep(10);
        }
        await armFault(emulator, "hangNextLoad", false);
        if (!hung() || attempt.exited()) return false;
        attempt.child.kill("SIGKILL");
        return true;
      }
      case "restart": {
        // Mid-run: once the run has loaded something (before its first answer, a server that
        // refuses is one that is not running, exit 3 by design).
        const started = () => emulator.stats().loads.length > attempt.loadsBefore;
        for (let waited = 0; !started() && !attempt.exited() && waited < 30_000; waited += 10) {
          await sleep(10);
        }
        if (attempt.exited()) return false;
        await proxy.restart(1_300);
        return true;
      }
    }
  } catch {
    return false; // It ended just now.
  }
}

async function runToEnd(server: string, home: string, args: string[]): Promise<number> {
  const { done } = spawnCli(server, home, args);
  const [status, stderr] = await done;
  if (status.code !== 0) {
    throw new Error(`lmstrix ${args.join(" ")}: exit ${status.code}\n${stderr}`);
  }
  return status.code;
}

async function armFault(
  emulator: Emulator,
  kind: "dropNextLoad" | "dropNextPredict" | "hangNextLoad",
  on = true,
) {
  const response = await fetch(`${emulator.httpUrl}/__emulator/faults`, {
    method: "POST",
    body: JSON.stringify({ [kind]: on }),
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
  /** Disturbances carried out, by kind. */
  disturbances: Record<Disturbance, number>;
  dropsArmed: number;
  dropsHit: number;
  extraLoads: number;
  maxExtraLoadsPerRun: number;
  mismatches: string[];
  leftovers: number;
  overBudget: string[];
  unexpectedExits: string[];
  /** apply and undo runs of the apply/undo cycles, and the kills that landed in them. */
  applyAttempts: number;
  applyKills: { SIGKILL: number; SIGINT: number };
  /** What an apply/undo cycle left not as it was (a config's bytes, a folder, the manifest). */
  applyProblems: string[];
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
  const proxy = startProxy(emulator.port);
  const base = await Deno.makeTempDir({ prefix: "lmstrix-soak-" });
  console.log(`LM Studio emulator with ${profiles.length} demo models on ${emulator.url}`);
  const figures: Figures = {
    runs,
    attempts: 0,
    interrupts: 0,
    disturbances: {
      "SIGINT": 0,
      "group SIGINT": 0,
      "SIGHUP": 0,
      "SIGKILL in a load": 0,
      "restart": 0,
    },
    dropsArmed: 0,
    dropsHit: 0,
    extraLoads: 0,
    maxExtraLoadsPerRun: 0,
    mismatches: [],
    leftovers: 0,
    overBudget: [],
    unexpectedExits: [],
    applyAttempts: 0,
    applyKills: { SIGKILL: 0, SIGINT: 0 },
    applyProblems: [],
  };
  try {
    // The reference: an undisturbed run.
    const cleanHome = join(base, "clean");
    // lmstrix refuses an LM Studio home that does not exist (it would be a misspelling).
    await Deno.mkdir(cleanHome);
    await runToEnd(proxy.url, cleanHome, ["scan", "-q"]);
    emulator.reset();
    const started = performance.now();
    await runToEnd(proxy.url, cleanHome, ["test", "--all", "-q"]);
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
      await runToEnd(proxy.url, home, ["scan", "-q"]);
      let interrupts = 0;
      let restarts = 0;
      let killedInLoad = false;
      let finished = false;
      /** Where each attempt started in the load list, and how it ended: for the diagnosis. */
      const marks: { at: number; code: number; interruptAt: number | null }[] = [];
      for (let attempt = 1; attempt <= MAX_ATTEMPTS && !finished; attempt++) {
        figures.attempts++;
        let disturbance = interrupts + restarts < MAX_INTERRUPTS ? pickDisturbance(random) : null;
        // A second death in the same load counts as a crash by design (the OOM killer can take
        // the process while LM Studio loads), so a run gets at most one SIGKILL in a load.
        if (disturbance === "SIGKILL in a load" && killedInLoad) disturbance = "SIGINT";
        if (disturbance === "SIGKILL in a load") killedInLoad = true;
        const viaTask = disturbance === "group SIGINT";
        const { child, done } = spawnCli(proxy.url, home, ["test", "--all", "-q"], viaTask);
        // A moment anywhere in the run: during startup, a load, a prediction, a save.
        const interruptAt = random() * cleanMs * 1.2;
        const drops = Array.from({ length: Math.floor(random() * 3) }, () => ({
          at: random() * cleanMs,
          kind: random() < 0.5 ? "dropNextLoad" as const : "dropNextPredict" as const,
        }));
        let exited = false;
        const ended = done.finally(() => exited = true);
        const attemptInfo = {
          child,
          exited: () => exited,
          home,
          loadsBefore: emulator.stats().loads.length,
        };
        const disturbances = [
          ...drops.map(async (drop) => {
            await sleep(drop.at);
            if (exited) return;
            await armFault(emulator, drop.kind);
            figures.dropsArmed++;
          }),
          (async () => {
            if (disturbance === null) return;
            if (!(await disturb(disturbance, interruptAt, attemptInfo, emulator, proxy))) return;
            figures.disturbances[disturbance]++;
            if (disturbance === "restart") restarts++;
            else interrupts++;
          })(),
        ];
        const loadsBefore = emulator.stats().loads.length;
        const [status, stderr] = await ended;
        await Promise.all(disturbances);
        marks.push({
          at: loadsBefore,
          code: status.code,
          interruptAt: disturbance === null ? null : Math.round(interruptAt),
        });
        if (status.code === 0) finished = true;
        if (!(disturbance === null ? [0] : EXPECTED_EXITS[disturbance]).includes(status.code)) {
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
      if (extra > interrupts + 2 * restarts + dropLoads) {
        figures.overBudget.push(
          `run ${run}: ${extra} extra loads for ${interrupts} interrupts, ${restarts} restarts ` +
            `and ${dropLoads} dropped loads`,
        );
        // The load sequence with the attempt boundaries, to compare with the undisturbed one.
        const lines = stats.loads.map((l, i) => {
          const mark = marks.filter((m) => m.at === i).map((m) =>
            `--- attempt (exit ${m.code}${
              m.interruptAt === null ? "" : `, disturbed at ${m.interruptAt} ms`
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
      if (finished) {
        await prepareApplyShelf(home, random);
        const cycle = await applyCycle(home, (a) => spawnCli(proxy.url, home, a), random);
        figures.applyAttempts += cycle.attempts;
        figures.applyKills.SIGKILL += cycle.kills.SIGKILL;
        figures.applyKills.SIGINT += cycle.kills.SIGINT;
        figures.applyProblems.push(...cycle.problems.map((p) => `run ${run}: apply/undo: ${p}`));
      }
      console.log(
        `run ${run}: ${interrupts} interrupts, ${restarts} restarts, ${dropLoads} dropped loads, ` +
          `${stats.loads.length} loads (${extra >= 0 ? "+" : ""}${extra}), ` +
          `${stats.loaded.length} left loaded`,
      );
      // One-shot faults armed but never hit must not spill into the next run.
      emulator.reset();
    }
  } finally {
    await proxy.close();
    await emulator.close();
    await Deno.remove(base, { recursive: true }).catch(() => {});
  }
  return report(figures);
}

function report(f: Figures): number {
  const problems = [...f.mismatches, ...f.overBudget, ...f.unexpectedExits, ...f.applyProblems];
  console.log(
    [
      "",
      `runs:             ${f.runs}`,
      `attempts:         ${f.attempts}`,
      `disturbances:     ${
        Object.entries(f.disturbances).map(([kind, n]) => `${n} ${kind}`).join(", ")
      }`,
      `drops:            ${f.dropsHit} hit of ${f.dropsArmed} armed`,
      `extra loads:      ${f.extraLoads} in all, at most ${f.maxExtraLoadsPerRun} in one run`,
      `mismatches:       ${f.mismatches.length}`,
      `over budget:      ${f.overBudget.length}`,
      `unexpected exits: ${f.unexpectedExits.length}`,
      `left loaded:      ${f.leftovers}`,
      `apply/undo:       ${f.applyAttempts} runs, ${f.applyKills.SIGKILL} SIGKILL and ` +
      `${f.applyKills.SIGINT} SIGINT landed; shelf with ${COLLISION_IDS.join(" and ")}`,
      `configs not as before after undo: ${f.applyProblems.length}`,
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

/**
 * Helpers of the reliability tests: a two-model fleet with irregular limits, the CLI run against
 * an emulator with short backoff delays, spawned runs with a watchdog, a clean run to compare
 * with, the registry and logs as stored, and assertions on them.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { ModelProfile } from "../../scripts/emulator/profile.ts";
import type { Emulator } from "../../scripts/emulator/server.ts";
import type { EmulatorStats } from "../../scripts/emulator/stats.ts";
import { cliCommand, type CliRun, runCliAgainst, tempHome } from "./cli.ts";
import { testProfile, withEmulator } from "./emulator.ts";

/** Retries after a fault wait 20, 40, 80 ms instead of seconds. */
export const BACKOFF_ENV = { LMSTRIX_BACKOFF_MS: "20" };

/**
 * Two models with irregular limits: one refuses loads above 59111 of its 128k (a long loadable
 * search, where a resume that miscounts its loads shows), one loses needles early.
 */
/**
 * The emulator's wait for a cancel after a load's first progress report, for runs whose counts
 * are compared: checks are cancelled in time in all of them, as they are when loads take real
 * time (without it every check would load before its cancel came, and the search would stop
 * checking, as on a server that does not honour the cancel).
 */
export const CANCEL_HOLD = { cancelHoldMs: 100 } as const;

export function fleet(faults: Partial<Record<"alpha" | "beta", Partial<ModelProfile>>> = {}) {
  return [
    testProfile("alpha", {
      sizeBytes: 1_000_000_000,
      declaredContext: 131072,
      loadFailAbove: 59_111,
      ...faults.alpha,
    }),
    testProfile("beta", {
      sizeBytes: 2_000_000_000,
      declaredContext: 32768,
      needleFailAbove: 21_111,
      needleFailMode: "wrong-number",
      ...faults.beta,
    }),
  ];
}

export interface StoredRecord {
  id: string;
  status: string;
  loadableContext: number | null;
  workingContext: number | null;
  error: string | null;
  search?: { pendingLoad?: number; phase?: string };
}

export async function readRegistry(home: string): Promise<Record<string, StoredRecord>> {
  const text = await Deno.readTextFile(join(home, "lmstrix", "models.json"));
  return (JSON.parse(text) as { models: Record<string, StoredRecord> }).models;
}

/** Checks (loads cancelled as they start) per model, from every attempt log of `home`. */
export async function checksByModel(home: string): Promise<Map<string, number>> {
  const checks = new Map<string, number>();
  for await (const file of Deno.readDir(join(home, "lmstrix", "context_tests"))) {
    if (!file.name.endsWith(".log")) continue;
    const text = await Deno.readTextFile(join(home, "lmstrix", "context_tests", file.name));
    for (const line of text.split("\n")) {
      const entry = line.trim() === "" ? null : JSON.parse(line);
      if (entry?.action !== "check") continue;
      checks.set(entry.model, (checks.get(entry.model) ?? 0) + 1);
    }
  }
  return checks;
}

export async function readLog(home: string, id: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(
    join(home, "lmstrix", "context_tests", `${id}_context_test.log`),
  );
  return text.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line));
}

/** Runs the CLI against `emulator` with short backoff delays. */
export function lmstrix(
  emulator: Emulator,
  home: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliRun> {
  return runCliAgainst(emulator.url, home, args, { ...BACKOFF_ENV, ...env });
}

/** Polls `check` every 10 ms until it holds; fails after `ms`. */
export async function waitFor(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export const loadInFlight = (s: EmulatorStats) =>
  s.loads.some((l) => !l.ok && l.error === null && l.loadedContext === null);
export const predictionInFlight = (s: EmulatorStats) =>
  s.predictions.some((p) => p.stopReason === null && p.error === null);
export const completedLoads = (s: EmulatorStats) =>
  s.loads.filter((l) => l.error !== "cancelled").length;
/**
 * The load requests LM Studio got, as `model@context`, in order: cancelled ones too, since a
 * check (a load cancelled as it starts) is cancelled or not by a race of the cancel against the
 * load, while an interrupted load is one request that its rerun repeats.
 */
export const loadSequence = (s: EmulatorStats) =>
  s.loads.map((l) => `${l.modelKey}@${l.askedContext}`);

/** Whether `actual` is `expected` with at most one element inserted (the repeated attempt). */
export function oneInsertAway(actual: string[], expected: string[]): boolean {
  if (actual.length === expected.length) return actual.every((x, i) => x === expected[i]);
  if (actual.length !== expected.length + 1) return false;
  return actual.some((_, skip) =>
    actual.filter((_, i) => i !== skip).every((x, i) => x === expected[i])
  );
}

/** How long a spawned run may take before it is killed with SIGKILL. */
export const WATCHDOG_MS = 20_000;

/** A started CLI run whose output is collected while it runs. */
export interface RunningCli {
  child: Deno.ChildProcess;
  done: Promise<CliRun>;
}

export function spawnCli(
  emulator: Emulator,
  home: string,
  args: string[],
  env: Record<string, string> = {},
): RunningCli {
  const child = cliCommand(args, {
    home,
    env: { LMSTRIX_SERVER: emulator.url, ...BACKOFF_ENV, ...env },
  }).spawn();
  // A run that does not end (a lingering socket, a lost signal) is killed, and fails its test.
  const watchdog = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, WATCHDOG_MS);
  const done = child.output().then((output) => ({
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  })).finally(() => clearTimeout(watchdog));
  return { child, done };
}

/** The numbers and load counts of an undisturbed `test --all` of `profiles`. */
export interface CleanRun {
  models: Record<string, StoredRecord>;
  loads: number;
  sequence: string[];
  predictions: number;
}

let cleanFleetRun: Promise<CleanRun> | undefined;

/** The numbers and load counts of an undisturbed `test --all` of {@link fleet} (run once). */
export function cleanRun(): Promise<CleanRun> {
  cleanFleetRun ??= (async () => {
    await using home = await tempHome();
    return await withEmulator(fleet(), async (emulator) => {
      assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
      const run = await lmstrix(emulator, home.path, ["test", "--all"]);
      assert.equal(run.code, 0, run.stderr);
      const stats = emulator.stats();
      return {
        models: await readRegistry(home.path),
        loads: stats.loads.length,
        sequence: loadSequence(stats),
        predictions: stats.predictions.length,
      };
    }, CANCEL_HOLD);
  })();
  return cleanFleetRun;
}

/**
 * Starts every case at once (each waits mostly on child processes and timers), then checks each
 * case in its own step, so the file stays fast while every case keeps its own name.
 */
export async function parallelSteps<C, R>(
  t: Deno.TestContext,
  cases: readonly C[],
  name: (c: C) => string,
  run: (c: C) => Promise<R>,
  check: (c: C, result: R) => void | Promise<void>,
): Promise<void> {
  const started = cases.map((c) => {
    const promise = run(c);
    promise.catch(() => {}); // awaited in its step
    return promise;
  });
  for (const [index, c] of cases.entries()) {
    await t.step(name(c), async () => await check(c, await started[index]!));
  }
  await Promise.allSettled(started);
}

export function assertSameNumbers(
  actual: Record<string, StoredRecord>,
  expected: Record<string, StoredRecord>,
  ids: string[],
): void {
  for (const id of ids) {
    assert.equal(actual[id]?.status, "tested", `${id} is tested`);
    assert.equal(actual[id]?.loadableContext, expected[id]?.loadableContext, `${id} loadable`);
    assert.equal(actual[id]?.workingContext, expected[id]?.workingContext, `${id} working`);
  }
}

export function assertNoStackTrace(stderr: string): void {
  assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
}

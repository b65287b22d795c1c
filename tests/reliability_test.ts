/**
 * Reliability of the `lmstrix` CLI against the LM Studio emulator's fault injection: interrupts
 * (SIGINT, SIGTERM, a second Ctrl-C, SIGKILL), the writer lock held by another process, dropped
 * connections, hung calls and `--timeout`, LM Studio going away mid-run, leftovers of a crashed
 * run, and bad input (usage errors, damaged or newer registries left byte-identical).
 *
 * Every run spawns the CLI exactly as users run it (tests/support/cli.ts); the emulator runs in
 * this process on a free port. Profiles are small (16k-32k declared) with irregular limits, and
 * backoff delays are shortened with `LMSTRIX_BACKOFF_MS`, so the whole file takes seconds.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import type { Emulator } from "../scripts/emulator/server.ts";
import type { EmulatorStats } from "../scripts/emulator/stats.ts";
import { cliCommand, type CliRun, runCliAgainst, tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";

/** Retries after a fault wait 20, 40, 80 ms instead of seconds. */
const BACKOFF_ENV = { LMSTRIX_BACKOFF_MS: "20" };

/**
 * Two models with irregular limits: one refuses loads above 59111 of its 128k (a long loadable
 * search, where a resume that miscounts its loads shows), one loses needles early.
 */
function fleet(faults: Partial<Record<"alpha" | "beta", Partial<ModelProfile>>> = {}) {
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

interface StoredRecord {
  id: string;
  status: string;
  loadableContext: number | null;
  workingContext: number | null;
  error: string | null;
  search?: { pendingLoad?: number; phase?: string };
}

async function readRegistry(home: string): Promise<Record<string, StoredRecord>> {
  const text = await Deno.readTextFile(join(home, "lmstrix", "models.json"));
  return (JSON.parse(text) as { models: Record<string, StoredRecord> }).models;
}

async function readLog(home: string, id: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(
    join(home, "lmstrix", "context_tests", `${id}_context_test.log`),
  );
  return text.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line));
}

/** Runs the CLI against `emulator` with short backoff delays. */
function lmstrix(
  emulator: Emulator,
  home: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliRun> {
  return runCliAgainst(emulator.url, home, args, { ...BACKOFF_ENV, ...env });
}

/** Polls `check` every 10 ms until it holds; fails after `ms`. */
async function waitFor(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const loadInFlight = (s: EmulatorStats) =>
  s.loads.some((l) => !l.ok && l.error === null && l.loadedContext === null);
const predictionInFlight = (s: EmulatorStats) =>
  s.predictions.some((p) => p.stopReason === null && p.error === null);
const completedLoads = (s: EmulatorStats) => s.loads.filter((l) => l.error !== "cancelled").length;
/** The loads LM Studio carried out (not cancelled), as `model@context`, in order. */
const loadSequence = (s: EmulatorStats) =>
  s.loads.filter((l) => l.error !== "cancelled").map((l) => `${l.modelKey}@${l.askedContext}`);

/** Whether `actual` is `expected` with at most one element inserted (the repeated attempt). */
function oneInsertAway(actual: string[], expected: string[]): boolean {
  if (actual.length === expected.length) return actual.every((x, i) => x === expected[i]);
  if (actual.length !== expected.length + 1) return false;
  return actual.some((_, skip) =>
    actual.filter((_, i) => i !== skip).every((x, i) => x === expected[i])
  );
}

/** How long a spawned run may take before it is killed with SIGKILL. */
const WATCHDOG_MS = 20_000;

/** A started CLI run whose output is collected while it runs. */
interface RunningCli {
  child: Deno.ChildProcess;
  done: Promise<CliRun>;
}

function spawnCli(
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
interface CleanRun {
  models: Record<string, StoredRecord>;
  loads: number;
  sequence: string[];
  predictions: number;
}

let cleanFleetRun: Promise<CleanRun> | undefined;

/** The numbers and load counts of an undisturbed `test --all` of {@link fleet} (run once). */
function cleanRun(): Promise<CleanRun> {
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
    });
  })();
  return cleanFleetRun;
}

/**
 * Starts every case at once (each waits mostly on child processes and timers), then checks each
 * case in its own step, so the file stays fast while every case keeps its own name.
 */
async function parallelSteps<C, R>(
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

function assertSameNumbers(
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

function assertNoStackTrace(stderr: string): void {
  assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
}

Deno.test("SIGINT and SIGTERM stop a run in a load or a prediction, and a rerun resumes", async (t) => {
  const clean = await cleanRun();
  const cases = [
    { signal: "SIGINT", code: 130, phase: "load" },
    { signal: "SIGTERM", code: 143, phase: "load" },
    { signal: "SIGINT", code: 130, phase: "prediction" },
    { signal: "SIGTERM", code: 143, phase: "prediction" },
  ] as const;
  type Case = typeof cases[number];
  /** Interrupts the third load or prediction of a slow emulator, then resumes on a fast one. */
  const scenario = async (c: Case) => {
    await using home = await tempHome();
    const delay = c.phase === "load" ? { load: 400 } : { predict: 400 };
    const stopped = await withEmulator(
      fleet({ alpha: { realDelayMs: delay } }),
      async (emulator) => {
        assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
        const run = spawnCli(emulator, home.path, ["test", "--all"]);
        await waitFor(`the third ${c.phase} in flight`, () => {
          const s = emulator.stats();
          return c.phase === "load"
            ? s.loads.length >= 3 && loadInFlight(s)
            : s.predictions.length >= 3 && predictionInFlight(s);
        });
        const sent = performance.now();
        run.child.kill(c.signal);
        const result = await run.done;
        const stats = emulator.stats();
        return {
          result,
          took: performance.now() - sent,
          loaded: stats.loaded,
          loads: completedLoads(stats),
          sequence: loadSequence(stats),
          predictions: stats.predictions.filter((p) => p.stopReason !== "userStopped").length,
        };
      },
    );
    const saved = await readRegistry(home.path);
    return await withEmulator(fleet(), async (emulator) => {
      const status = await lmstrix(emulator, home.path, ["status", "--json"]);
      const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
      const stats = emulator.stats();
      return {
        stopped,
        saved,
        lock: JSON.parse(status.stdout).lock,
        rerun,
        models: await readRegistry(home.path),
        loads: stats.loads.length,
        sequence: loadSequence(stats),
        predictions: stats.predictions.length,
        loaded: stats.loaded,
      };
    });
  };
  await parallelSteps(
    t,
    cases,
    (c) => `${c.signal} during a ${c.phase} exits ${c.code}, unloads, saves, and a rerun resumes`,
    scenario,
    (c, r) => {
      const { result, took } = r.stopped;
      assert.equal(result.code, c.code, result.stderr);
      assert.ok(took < 5_000, `stopped in ${Math.round(took)} ms`);
      assert.match(result.stderr, new RegExp(`Stopped by ${c.signal}`));
      assertNoStackTrace(result.stderr);
      assert.deepEqual(r.stopped.loaded, [], "nothing is left loaded");
      assert.equal(r.saved.alpha?.status, "testing");
      assert.ok(r.saved.alpha?.search !== undefined, "the search state is saved");
      assert.equal(r.saved.alpha?.search?.pendingLoad, undefined, "an interrupt is not a crash");
      assert.equal(r.lock, null, "the lock is released");
      assert.equal(r.rerun.code, 0, r.rerun.stderr);
      assert.match(r.rerun.stderr, /alpha \(resuming\)/);
      assertSameNumbers(r.models, clean.models, ["alpha", "beta"]);
      // At most the attempt in flight is repeated (for a prediction, after reloading its instance).
      assert.ok(
        r.stopped.loads + r.loads <= clean.loads + 1,
        `${r.stopped.loads} + ${r.loads} loads against ${clean.loads} in a clean run`,
      );
      assert.ok(
        r.stopped.predictions + r.predictions <= clean.predictions + 1,
        `${r.stopped.predictions} + ${r.predictions} predictions against ` +
          `${clean.predictions} in a clean run`,
      );
      // ...and the search goes on where it stopped: the same loads as a run never stopped.
      const sequence = [...r.stopped.sequence, ...r.sequence];
      assert.ok(
        oneInsertAway(sequence, clean.sequence),
        `loads ${sequence.join(" ")}\nclean ${clean.sequence.join(" ")}`,
      );
      assert.deepEqual(r.loaded, []);
    },
  );

  const hangs = [
    { signal: "SIGINT", code: 130, fault: "hangOnLoad" },
    { signal: "SIGTERM", code: 143, fault: "hangOnCountTokens" },
    { signal: "SIGINT", code: 130, fault: "hangOnPredict" },
  ] as const;
  await parallelSteps(
    t,
    hangs,
    (c) => `${c.signal} ends a run stuck in a call LM Studio never answers (${c.fault})`,
    async (c) => {
      await using home = await tempHome();
      const stopped = await withEmulator(
        fleet({ alpha: { faults: { [c.fault]: [2] } } }),
        async (emulator) => {
          assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
          const run = spawnCli(emulator, home.path, ["test", "alpha"]);
          await waitFor(`the hung call (${c.fault})`, () => {
            const s = emulator.stats();
            return c.fault === "hangOnLoad"
              ? s.loads.some((l) => l.error === "fault: hang")
              : c.fault === "hangOnPredict"
              ? s.predictions.some((p) => p.error === "fault: hang")
              : s.tokenCounts >= 1;
          });
          await new Promise((resolve) => setTimeout(resolve, 100));
          const sent = performance.now();
          run.child.kill(c.signal);
          const result = await run.done;
          return { result, took: performance.now() - sent, loaded: emulator.stats().loaded };
        },
      );
      return { ...stopped, saved: await readRegistry(home.path) };
    },
    (c, r) => {
      assert.equal(r.result.code, c.code, r.result.stderr);
      assert.ok(r.took < 5_000, `stopped in ${Math.round(r.took)} ms`);
      assert.match(r.result.stderr, new RegExp(`Stopped by ${c.signal}`));
      assert.deepEqual(r.loaded, [], "nothing is left loaded");
      assert.equal(r.saved.alpha?.status, "testing");
      assert.equal(r.saved.alpha?.search?.pendingLoad, undefined);
    },
  );

  await t.step("a second SIGINT exits 130 at once, before the cleanup ends", async () => {
    await using home = await tempHome();
    await withEmulator(fleet({ alpha: { faults: { hangOnLoad: [2] } } }), async (emulator) => {
      assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
      const run = spawnCli(emulator, home.path, ["test", "--all"]);
      await waitFor("the hung load", () => emulator.stats().loads.length >= 2);
      await new Promise((resolve) => setTimeout(resolve, 100));
      run.child.kill("SIGINT");
      await new Promise((resolve) => setTimeout(resolve, 2));
      run.child.kill("SIGINT");
      const result = await run.done;
      assert.equal(result.code, 130);
      // The first SIGINT's cleanup would end with this line; the second one cut it short.
      assert.doesNotMatch(result.stderr, /Stopped by SIGINT/);
      assertNoStackTrace(result.stderr);
    });
    // The registry is whole (atomic writes) and the lock is free for the next run.
    await readRegistry(home.path);
    await withEmulator(fleet(), async (emulator) => {
      assert.equal((await lmstrix(emulator, home.path, ["test", "--all"])).code, 0);
    });
  });
});

/** Starts `deno eval` holding the OS lock on `<home>/lmstrix/lmstrix.lock` until stdin closes. */
async function lockHolder(home: string): Promise<{ pid: number } & AsyncDisposable> {
  const lockFile = join(home, "lmstrix", "lmstrix.lock");
  await Deno.mkdir(join(home, "lmstrix"), { recursive: true });
  const code = `
    const file = await Deno.open(${
    JSON.stringify(lockFile)
  }, { read: true, write: true, create: true });
    await file.lock(true);
    await file.truncate(0);
    await file.write(new TextEncoder().encode(JSON.stringify({ pid: Deno.pid, startedAt: "2025-01-02T03:04:05.000Z" }) + "\\n"));
    console.log("locked");
    for await (const _ of Deno.stdin.readable) { /* wait for stdin to close */ }
    file.close();
  `;
  const child = new Deno.Command("deno", {
    args: ["eval", code],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("locked")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the lock holder exited early");
    seen += value;
  }
  return {
    pid: child.pid,
    async [Symbol.asyncDispose]() {
      await child.stdin.close();
      await reader.cancel();
      await child.status;
    },
  };
}

Deno.test("a second writer exits 4 naming the holder, and readers still work", async (t) => {
  await using home = await tempHome();
  await withEmulator(fleet(), async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const before = await Deno.readFile(join(home.path, "lmstrix", "models.json"));
    {
      await using holder = await lockHolder(home.path);
      for (const args of [["scan"], ["test", "--all"], ["test", "alpha", "--json"]]) {
        await t.step(`${args.join(" ")} exits 4 and names pid ${holder.pid}`, async () => {
          const run = await lmstrix(emulator, home.path, args);
          assert.equal(run.code, 4, run.stderr);
          assert.match(run.stderr, new RegExp(`pid ${holder.pid}\\b`));
          assert.match(run.stderr, /^hint: /m);
          assert.equal(run.stdout, "");
          assertNoStackTrace(run.stderr);
        });
      }
      await t.step("status shows the holder, in --json too", async () => {
        const json = await lmstrix(emulator, home.path, ["status", "--json"]);
        assert.equal(json.code, 0, json.stderr);
        assert.deepEqual(JSON.parse(json.stdout).lock, {
          pid: holder.pid,
          startedAt: "2025-01-02T03:04:05.000Z",
        });
        const text = await lmstrix(emulator, home.path, ["status"]);
        assert.equal(text.code, 0);
        assert.match(text.stdout, new RegExp(`pid ${holder.pid}\\b`));
      });
      await t.step("list and show still work", async () => {
        const list = await lmstrix(emulator, home.path, ["list", "--json"]);
        assert.equal(list.code, 0, list.stderr);
        assert.equal(JSON.parse(list.stdout).models.length, 2);
        const show = await lmstrix(emulator, home.path, ["show", "beta", "--json"]);
        assert.equal(show.code, 0, show.stderr);
        assert.equal(JSON.parse(show.stdout).id, "beta");
      });
      assert.deepEqual(emulator.stats().loads, [], "the refused writers loaded nothing");
      assert.deepEqual(await Deno.readFile(join(home.path, "lmstrix", "models.json")), before);
    }
    await t.step("once the holder exits, the lock is free again", async () => {
      const status = await lmstrix(emulator, home.path, ["status", "--json"]);
      assert.equal(JSON.parse(status.stdout).lock, null);
      assert.equal((await lmstrix(emulator, home.path, ["test", "alpha", "-q"])).code, 0);
    });
  });
});

Deno.test("dropped connections and hung calls are retried, never recorded as limits", async (t) => {
  const clean = await cleanRun();
  const cases: [string, () => Promise<void>][] = [
    ["drops during loads and predictions give a clean run's numbers", async () => {
      await using home = await tempHome();
      const faulty = fleet({
        alpha: { faults: { dropOnLoad: [1, 3], dropOnPredict: [2] } },
        beta: { faults: { dropOnPredict: [1, 4] } },
      });
      await withEmulator(faulty, async (emulator) => {
        assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
        const run = await lmstrix(emulator, home.path, ["test", "--all"]);
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stderr.match(/failed \(.*\); retry 1/g)?.length, 5, run.stderr);
        assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha", "beta"]);
        const stats = emulator.stats();
        assert.equal(stats.loads.filter((l) => l.error === "fault: drop").length, 2);
        assert.equal(stats.predictions.filter((p) => p.error === "fault: drop").length, 3);
        assert.deepEqual(stats.loaded, []);
      });
    }],
    ["one-shot drops armed over HTTP are absorbed too", async () => {
      await using home = await tempHome();
      await withEmulator(fleet(), async (emulator) => {
        assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
        const armed = await fetch(`${emulator.httpUrl}/__emulator/faults`, {
          method: "POST",
          body: JSON.stringify({ dropNextLoad: true, dropNextPredict: true }),
        });
        assert.equal(armed.status, 200);
        await armed.body?.cancel();
        const run = await lmstrix(emulator, home.path, ["test", "--all"]);
        assert.equal(run.code, 0, run.stderr);
        assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha", "beta"]);
        assert.equal(emulator.stats().loads.filter((l) => l.error === "fault: drop").length, 1);
      });
    }],
    ["hung calls time out after --timeout and are retried", async () => {
      await using home = await tempHome();
      const hung = fleet({
        alpha: { faults: { hangOnLoad: [2], hangOnPredict: [1], hangOnCountTokens: [1] } },
      });
      await withEmulator(hung, async (emulator) => {
        assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
        const started = performance.now();
        const run = await lmstrix(emulator, home.path, ["test", "alpha", "--timeout", "0.5"]);
        const took = performance.now() - started;
        assert.equal(run.code, 0, run.stderr);
        for (const call of ["load", "complete", "countTokens"]) {
          assert.match(
            run.stderr,
            new RegExp(`did not answer "${call}" within 0\\.[56] s\\); retry 1`),
          );
        }
        assert.ok(took >= 1_500 && took < 10_000, `took ${Math.round(took)} ms`);
        assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha"]);
      });
    }],
    ["a call that hangs every time fails the model, not its limits (LMSTRIX_TIMEOUT)", async () => {
      await using home = await tempHome();
      await withEmulator(
        fleet({ alpha: { faults: { hangOnPredict: [1, 2, 3, 4] } } }),
        async (emulator) => {
          assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
          const run = await lmstrix(emulator, home.path, ["test", "alpha", "--json"], {
            LMSTRIX_TIMEOUT: "0.3",
          });
          assert.equal(run.code, 1, run.stderr);
          const [result] = JSON.parse(run.stdout).results;
          assert.equal(result.status, "failed");
          assert.match(result.error, /did not answer "complete" within 0\.\d s/);
          const saved = (await readRegistry(home.path)).alpha;
          assert.equal(saved?.loadableContext, null, "no limit is recorded");
          assert.ok(saved?.search !== undefined, "the search state is kept for a rerun");
          assert.deepEqual(emulator.stats().loaded, []);
          // The server answers again: the rerun resumes and finds the clean numbers.
          const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
          assert.equal(rerun.code, 0, rerun.stderr);
          assert.match(rerun.stderr, /alpha \(resuming\)/);
          assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha", "beta"]);
        },
      );
    }],
  ];
  await parallelSteps(t, cases, ([name]) => name, ([, body]) => body(), () => {});
});

Deno.test("LM Studio going away mid-run exits 3 with progress saved, and a rerun resumes", async () => {
  const clean = await cleanRun();
  await using home = await tempHome();
  let before: string[] = [];
  await withEmulator(fleet({ alpha: { realDelayMs: { load: 200 } } }), async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const run = spawnCli(emulator, home.path, ["test", "--all"]);
    await waitFor("the third load", () => {
      const s = emulator.stats();
      return s.loads.length >= 3 && loadInFlight(s);
    });
    await emulator.close();
    const started = performance.now();
    const result = await run.done;
    before = loadSequence(emulator.stats());
    assert.equal(result.code, 3, result.stderr);
    assert.ok(performance.now() - started < 10_000);
    assert.match(result.stderr, /^error: Cannot reach LM Studio at "ws:\/\/127\.0\.0\.1:\d+"/m);
    assert.match(result.stderr, /^hint: /m);
    assertNoStackTrace(result.stderr);
  });
  const saved = await readRegistry(home.path);
  assert.equal(saved.alpha?.status, "testing");
  assert.ok(saved.alpha?.search !== undefined);
  assert.equal(saved.alpha?.search?.pendingLoad, undefined, "a lost connection is not a crash");
  await withEmulator(fleet(), async (emulator) => {
    const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
    assert.equal(rerun.code, 0, rerun.stderr);
    assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha", "beta"]);
    // The rerun goes on where the lost connection stopped it, repeating at most that load.
    const sequence = [...before, ...loadSequence(emulator.stats())];
    assert.ok(
      oneInsertAway(sequence, clean.sequence),
      `loads ${sequence.join(" ")}\nclean ${clean.sequence.join(" ")}`,
    );
  });
});

Deno.test("leftovers of a killed run are cleaned up and the user's models left alone", async () => {
  await using home = await tempHome();
  const profiles = fleet({
    alpha: { faults: { hangOnPredict: [2] } },
    beta: { faults: { hangOnLoad: [2] } },
  });
  await withEmulator(profiles, async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const mine = emulator.loadByHand("beta", "my-beta", 4096);

    // SIGKILL during a prediction: its instance stays loaded in LM Studio.
    const first = spawnCli(emulator, home.path, ["test", "alpha"]);
    await waitFor(
      "the hung prediction",
      () => emulator.stats().predictions.some((p) => p.error === "fault: hang"),
    );
    first.child.kill("SIGKILL");
    await first.done;
    const stale = emulator.stats().loaded.filter((l) => l.identifier.startsWith("lmstrix-"));
    assert.equal(stale.length, 1, "the killed run left its instance");

    // The next run unloads it, warns about the user's model, and is killed during a load.
    const second = spawnCli(emulator, home.path, ["test", "beta"]);
    await waitFor(
      "the hung load",
      () => emulator.stats().loads.some((l) => l.modelKey === "beta" && l.error === "fault: hang"),
    );
    const pending = emulator.stats().loads.findLast((l) => l.modelKey === "beta")!.askedContext!;
    second.child.kill("SIGKILL");
    const killed = await second.done;
    assert.match(killed.stderr, new RegExp(`Unloaded "${stale[0]!.identifier}" \\(alpha\\)`));
    assert.match(killed.stderr, /"beta" is loaded \(not by LMStrix\) and takes memory/);
    assert.deepEqual(emulator.stats().loaded, [mine], "only the user's model is loaded");
    assert.equal((await readRegistry(home.path)).beta?.search?.pendingLoad, pending);

    // The rerun counts the load the machine died in as failed, with a warning, and finishes.
    const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stderr, /alpha \(resuming\)/);
    assert.match(
      rerun.stderr,
      new RegExp(`stopped while loading "beta" at ${pending} tokens.*counts as failed`),
    );
    const crashed = (await readLog(home.path, "beta")).filter((e) => e.outcome === "crashed");
    assert.deepEqual(crashed.map((e) => e.askedContext), [pending]);
    const models = await readRegistry(home.path);
    assert.equal(models.alpha?.status, "tested");
    assert.equal(models.beta?.status, "tested");
    // Killed in a confirmation load: that size now counts as not working.
    assert.ok(models.beta!.workingContext! < pending, "the crashed size is not reported");
    assert.deepEqual(emulator.stats().loaded, [mine], "the user's model is still loaded");
  });
});

Deno.test("bad input exits 2 with one error line and a hint, and no stack trace", async (t) => {
  await using home = await tempHome();
  const profiles = [
    ...fleet(),
    testProfile("alpha-mini", { sizeBytes: 500_000_000 }),
    { ...testProfile("nomic-embed", { sizeBytes: 100_000_000 }), type: "embedding" as const },
  ];
  await withEmulator(profiles, async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const registryFile = join(home.path, "lmstrix", "models.json");
    const cases: [string, string[], RegExp, Record<string, string>?][] = [
      [
        "an unknown model names near misses",
        ["test", "alphx"],
        /No model matches "alphx"; did you mean "alpha"/,
      ],
      [
        "an ambiguous model names the candidates",
        ["test", "alp"],
        /ambiguous.*"alpha", "alpha-mini"/,
      ],
      ["show of an unknown model", ["show", "gamma"], /No model matches "gamma"/],
      ["an embedding model", ["test", "nomic"], /"nomic-embed" is an embedding model/],
      [
        "a malformed precision",
        ["test", "beta", "--precision", "abc"],
        /--precision.*'abc' is invalid/,
      ],
      [
        "a negative max context",
        ["test", "beta", "--max-context", "-5"],
        /--max-context.*'-5' is invalid/,
      ],
      [
        "a zero min context",
        ["test", "beta", "--min-context", "0"],
        /--min-context.*'0' is invalid/,
      ],
      [
        "a malformed timeout",
        ["test", "beta", "--timeout", "soon"],
        /--timeout.*'soon' is invalid/,
      ],
      [
        "a malformed LMSTRIX_TIMEOUT",
        ["test", "beta"],
        /LMSTRIX_TIMEOUT must be a positive number of seconds, not "x"/,
        {
          LMSTRIX_TIMEOUT: "x",
        },
      ],
      ["models and --all together", ["test", "--all", "beta"], /model names or --all, not both/],
      [
        "min above max context",
        ["test", "beta", "--min-context", "8k", "--max-context", "4k"],
        /--min-context \(8192\) is above --max-context \(4096\)/,
      ],
      ["no model and no --all", ["test"], /Name the models to test, or pass --all/],
      ["an unknown flag", ["list", "--colour"], /unknown option '--colour'/],
      ["an unknown command", ["tset"], /unknown command 'tset'/],
      ["a bad server address", ["scan", "--server", "ftp://x"], /Unsupported scheme/],
    ];
    const before = await Deno.readFile(registryFile);
    await parallelSteps(
      t,
      cases,
      ([name, args]) => `${name}: lmstrix ${args.join(" ")}`,
      ([, args, , env]) => lmstrix(emulator, home.path, args, env),
      async ([, , message], run) => {
        assert.equal(run.code, 2, run.stderr);
        assert.equal(run.stdout, "");
        // Progress may come first (scan says what it starts); the error ends the output.
        const lines = run.stderr.trimEnd().split("\n").slice(-2);
        assert.equal(run.stderr.match(/^error: /gm)?.length, 1, run.stderr);
        assert.match(lines[0]!, /^error: /);
        assert.match(lines[0]!, message);
        assert.match(lines[1]!, /^hint: /);
        assertNoStackTrace(run.stderr);
        assert.deepEqual(await Deno.readFile(registryFile), before);
      },
    );
    assert.deepEqual(emulator.stats().loads, [], "no bad input loaded anything");
  });
});

Deno.test("a damaged or newer registry exits 2 naming the file, which stays byte-identical", async (t) => {
  const contents = {
    "a damaged registry": '{"schemaVersion": 1, "models": {"alpha": ',
    "a registry of a newer schema": JSON.stringify({ schemaVersion: 99, models: {} }),
    "a registry with a malformed record": JSON.stringify({
      schemaVersion: 1,
      models: { alpha: { id: "alpha", status: "great" } },
    }),
  };
  const commands = [["scan"], ["test", "--all"], ["test", "alpha"], ["list"], ["status"], [
    "show",
    "alpha",
  ]];
  const cases = Object.entries(contents).flatMap(([name, content]) =>
    commands.map((args) => ({ name, content, args }))
  );
  await withEmulator(fleet(), async (emulator) => {
    await parallelSteps(
      t,
      cases,
      (c) => `${c.name}: lmstrix ${c.args.join(" ")}`,
      async (c) => {
        await using home = await tempHome();
        const registryFile = join(home.path, "lmstrix", "models.json");
        await Deno.mkdir(join(home.path, "lmstrix"), { recursive: true });
        await Deno.writeTextFile(registryFile, c.content);
        const run = await lmstrix(emulator, home.path, c.args);
        return { run, registryFile, after: await Deno.readTextFile(registryFile) };
      },
      (c, { run, registryFile, after }) => {
        assert.equal(run.code, 2, run.stderr);
        assert.ok(run.stderr.includes(`"${registryFile}"`), run.stderr);
        assert.match(run.stderr, /^hint: /m);
        assertNoStackTrace(run.stderr);
        assert.equal(after, c.content);
      },
    );
    assert.deepEqual(emulator.stats().loads, []);
  });
});

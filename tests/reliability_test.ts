/**
 * Reliability of the `lmstrix` CLI against the LM Studio emulator's fault injection: interrupts
 * (SIGINT, SIGTERM, SIGHUP, SIGQUIT), the writer lock held by another process, dropped
 * connections, hung calls and `--timeout`, LM Studio going away mid-run, and bad input (usage
 * errors, damaged or newer registries left byte-identical). Deaths during loads and leftovers
 * are in leftovers_test.ts, Ctrl-C through `deno task` in signals_test.ts.
 *
 * Every run spawns the CLI exactly as users run it (tests/support/cli.ts); the emulator runs in
 * this process on a free port. Profiles are small (16k-32k declared) with irregular limits, and
 * backoff delays are shortened with `LMSTRIX_BACKOFF_MS`, so the whole file takes seconds.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tempHome } from "./support/cli.ts";
import { testProfile, withEmulator as withFastEmulator } from "./support/emulator.ts";
import {
  assertNoStackTrace,
  assertSameNumbers,
  CANCEL_HOLD,
  cleanRun,
  completedLoads,
  fleet,
  lmstrix,
  loadInFlight,
  loadSequence,
  oneInsertAway,
  parallelSteps,
  predictionInFlight,
  readRegistry,
  spawnCli,
  waitFor,
} from "./support/reliability.ts";

/** Every emulator of this file waits {@link CANCEL_HOLD} for a check's cancel. */
const withEmulator: typeof withFastEmulator = (profiles, fn, options = {}) =>
  withFastEmulator(profiles, fn, { ...CANCEL_HOLD, ...options });

Deno.test("SIGINT, SIGTERM, SIGHUP and SIGQUIT stop a run in a load or a prediction, and a rerun resumes", async (t) => {
  const clean = await cleanRun();
  const cases = [
    { signal: "SIGINT", code: 130, phase: "load" },
    { signal: "SIGTERM", code: 143, phase: "load" },
    { signal: "SIGINT", code: 130, phase: "prediction" },
    { signal: "SIGTERM", code: 143, phase: "prediction" },
    { signal: "SIGHUP", code: 129, phase: "load" },
    { signal: "SIGQUIT", code: 131, phase: "prediction" },
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
      // The contract: `testing` only while a run tests it; stopped, it is untested and resumable.
      assert.equal(r.saved.alpha?.status, "untested");
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
      assert.equal(r.saved.alpha?.status, "untested"); // Stopped: no longer testing (contract).;
      assert.equal(r.saved.alpha?.search?.pendingLoad, undefined);
    },
  );
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
          // --json: the contract's error document; otherwise nothing on stdout.
          if (args.includes("--json")) assert.equal(JSON.parse(run.stdout).error.exitCode, 4);
          else assert.equal(run.stdout, "");
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
        const retries = run.stderr.match(/failed \(.*\); trying again \(retry 1\)/g);
        assert.equal(retries?.length, 5, run.stderr);
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
        // Each call in a user's words, with no adapter name left in LM Studio's text.
        const calls = [
          "(loading the model|a load check)",
          "a prediction",
          "counting the prompt's tokens",
        ];
        for (const call of calls) {
          assert.match(
            run.stderr,
            new RegExp(
              `alpha: ${call} failed \\(LM Studio did not answer within 0\\.[56] s\\); ` +
                "trying again \\(retry 1\\)",
            ),
          );
        }
        assert.doesNotMatch(run.stderr, /"(load|complete|countTokens)"/);
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
  assert.equal(saved.alpha?.status, "untested"); // Stopped: no longer testing (contract).;
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
    // One malformed record is quarantined instead (tests/cli_test.ts).
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

/**
 * Interrupts as a terminal delivers them: Ctrl-C reaches the whole foreground process group, so
 * under `deno task start` the CLI gets SIGINT from the terminal and again from `deno task`; one
 * keypress must still stop the run cleanly. A person's second Ctrl-C (after a clear gap, or
 * another signal) quits at once. Also the gate that tells the two apart, without processes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Emulator } from "../scripts/emulator/server.ts";
import { InterruptGate, REPEAT_GAP_MS } from "../src/interrupts.ts";
import { type CliRun, tempHome } from "./support/cli.ts";
import { withEmulator } from "./support/emulator.ts";
import { startProxy } from "./support/proxy.ts";
import {
  assertNoStackTrace,
  assertSameNumbers,
  BACKOFF_ENV,
  cleanRun,
  fleet,
  lmstrix,
  loadInFlight,
  predictionInFlight,
  readRegistry,
  spawnCli,
  waitFor,
  WATCHDOG_MS,
} from "./support/reliability.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("one signal delivered twice is one request; a second request needs a gap or another signal", () => {
  let now = 0;
  const gate = new InterruptGate(() => now);
  assert.equal(gate.receive("SIGINT"), "stop");
  now += 3;
  assert.equal(gate.receive("SIGINT"), "duplicate", "deno task forwarding the same Ctrl-C");
  now += REPEAT_GAP_MS - 10;
  assert.equal(gate.receive("SIGINT"), "duplicate", "measured from the latest delivery");
  now += REPEAT_GAP_MS;
  assert.equal(gate.receive("SIGINT"), "quit", "a person's second Ctrl-C");
  assert.equal(gate.first, "SIGINT");

  const other = new InterruptGate(() => 0);
  assert.equal(other.receive("SIGHUP"), "stop");
  assert.equal(other.receive("SIGTERM"), "quit", "another signal is another request");
});

/** `deno task start <args>` as a person runs it, against `emulator`. */
function spawnTask(emulator: Emulator, home: string, args: string[]) {
  const child = new Deno.Command("deno", {
    args: ["task", "--quiet", "start", ...args],
    cwd: ROOT,
    env: {
      NO_COLOR: "1",
      LMSTRIX_LMSTUDIO_DIR: home,
      LMSTRIX_SERVER: emulator.url,
      ...BACKOFF_ENV,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const watchdog = setTimeout(() => child.kill("SIGKILL"), WATCHDOG_MS);
  const done: Promise<CliRun> = child.output().then((output) => ({
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  })).finally(() => clearTimeout(watchdog));
  return { child, done };
}

/** The pid of the CLI holding the lock of `home` (the process `deno task` started). */
function lockHolderPid(home: string): number | undefined {
  try {
    const text = Deno.readTextFileSync(join(home, "lmstrix", "lmstrix.lock"));
    const pid = (JSON.parse(text) as { pid?: unknown }).pid;
    return typeof pid === "number" ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Sends `signal` to every process of `pids` in one go, as a terminal signals its foreground
 * process group (from a `deno eval` child: the tests may only signal their own children).
 */
async function signalAtOnce(pids: number[], signal: Deno.Signal): Promise<void> {
  const code = pids.map((pid) => `Deno.kill(${pid}, ${JSON.stringify(signal)});`).join(" ");
  const { code: exit } = await new Deno.Command("deno", { args: ["eval", code] }).output();
  assert.equal(exit, 0, "the signals were sent");
}

Deno.test("Ctrl-C through deno task start stops cleanly, and a rerun gets a clean run's numbers", async (t) => {
  const clean = await cleanRun();
  for (const phase of ["load", "prediction"] as const) {
    await t.step(`Ctrl-C during a ${phase} unloads, saves and exits 130`, async () => {
      await using home = await tempHome();
      const delay = phase === "load" ? { load: 400 } : { predict: 400 };
      await withEmulator(fleet({ alpha: { realDelayMs: delay } }), async (emulator) => {
        assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
        const task = spawnTask(emulator, home.path, ["test", "--all"]);
        let cli: number | undefined;
        await waitFor(`the third ${phase} in flight`, () => {
          cli = lockHolderPid(home.path);
          const s = emulator.stats();
          return cli !== undefined && cli !== task.child.pid &&
            (phase === "load"
              ? s.loads.length >= 3 && loadInFlight(s)
              : s.predictions.length >= 3 && predictionInFlight(s));
        });
        // What a terminal does: the signal reaches every process of the group at once.
        await signalAtOnce([cli!, task.child.pid], "SIGINT");
        const stopped = await task.done;
        assert.equal(stopped.code, 130, stopped.stderr);
        assert.match(stopped.stderr, /Stopped by SIGINT; progress is saved/);
        assertNoStackTrace(stopped.stderr);
        assert.deepEqual(emulator.stats().loaded, [], "nothing is left loaded");
        const saved = (await readRegistry(home.path)).alpha;
        assert.equal(saved?.search?.pendingLoad, undefined, "an interrupt is not a crash");
      });
      await withEmulator(fleet(), async (emulator) => {
        const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
        assert.equal(rerun.code, 0, rerun.stderr);
        assert.doesNotMatch(rerun.stderr, /counts as failed/);
        assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha", "beta"]);
      });
    });
  }
});

Deno.test("a second Ctrl-C a second later quits at once while the cleanup hangs", async () => {
  await using home = await tempHome();
  await withEmulator(fleet({ alpha: { realDelayMs: { load: 400 } } }), async (emulator) => {
    await using proxy = startProxy(emulator.port);
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const run = spawnCli(emulator, home.path, ["test", "--all"], { LMSTRIX_SERVER: proxy.url });
    await waitFor("a load in flight", () => loadInFlight(emulator.stats()));
    proxy.freeze(); // LM Studio stops answering: the cleanup's calls hang
    run.child.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, REPEAT_GAP_MS + 200));
    const sent = performance.now();
    run.child.kill("SIGINT");
    const result = await run.done;
    const took = performance.now() - sent;
    assert.equal(result.code, 130, result.stderr);
    assert.ok(took < 2_000, `quit ${Math.round(took)} ms after the second Ctrl-C`);
    // The first Ctrl-C's cleanup would end with this line; the second one cut it short.
    assert.doesNotMatch(result.stderr, /Stopped by SIGINT/);
    assertNoStackTrace(result.stderr);
  });
  // The registry is whole (atomic writes) and the lock is free for the next run.
  await readRegistry(home.path);
  await withEmulator(fleet(), async (emulator) => {
    const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
    assert.equal(rerun.code, 0, rerun.stderr);
  });
});

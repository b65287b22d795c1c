/**
 * `test`'s results as a person and a cron job get them, end to end: each model's result line on
 * stdout as soon as the model is done (also under `--quiet`), one summary line on stderr that ends
 * every run, and with `--json` one document with the results so far, the summary and how the run
 * ended, also when Ctrl-C, SIGTERM or a lost LM Studio stopped it. At 80 columns, no line is cut
 * mid-word and every message reads in the user's words.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Emulator } from "../scripts/emulator/server.ts";
import { cliCommand, type CliRun, tempHome } from "./support/cli.ts";
import { STOPPED_VALUES, SUMMARY_KEYS } from "./support/contract.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";
import { startProxy } from "./support/proxy.ts";
import {
  assertNoStackTrace,
  BACKOFF_ENV,
  fleet,
  lmstrix,
  loadInFlight,
  readRegistry,
  waitFor,
  WATCHDOG_MS,
} from "./support/reliability.ts";

/** A CLI run whose stdout and stderr can be read while it runs. */
interface WatchedRun {
  child: Deno.ChildProcess;
  /** What the run has written so far. */
  readonly seen: { stdout: string; stderr: string };
  done: Promise<CliRun>;
}

/** Starts the CLI against `server` in `home`, collecting its output as it comes. */
function watch(
  server: string,
  home: string,
  args: string[],
  env: Record<string, string> = {},
): WatchedRun {
  const child = cliCommand(args, {
    home,
    env: { LMSTRIX_SERVER: server, ...BACKOFF_ENV, ...env },
  }).spawn();
  const seen = { stdout: "", stderr: "" };
  const collect = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) seen[key] += text;
  };
  const watchdog = setTimeout(() => child.kill("SIGKILL"), WATCHDOG_MS);
  const done = Promise.all([
    collect(child.stdout, "stdout"),
    collect(child.stderr, "stderr"),
    child.status,
  ]).then(([, , status]) => ({ code: status.code, ...seen })).finally(() => clearTimeout(watchdog));
  return { child, seen, done };
}

/** The fleet with beta's loads slowed down, so that a run can be stopped while beta is tested. */
const slowBeta = () => fleet({ beta: { realDelayMs: { load: 300 } } });

/** alpha (the smaller) is done and beta's load is in flight. */
function alphaDoneBetaLoading(emulator: Emulator): boolean {
  const s = emulator.stats();
  return s.loads.some((l) => l.modelKey === "beta") && loadInFlight(s);
}

/** A result line of the text output for `id`. */
const resultLine = (id: string) =>
  new RegExp(`^${id}: tested, working [\\d,]+ of [\\d,]+ declared \\([\\d.]+% less\\)$`, "m");

Deno.test("test --all prints each model's result as soon as it is done, and a stop keeps them", async (t) => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    await t.step(`${signal}: the finished model's lines and the summary survive`, async () => {
      await using home = await tempHome();
      await withEmulator(slowBeta(), async (emulator) => {
        assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
        const run = watch(emulator.url, home.path, ["test", "--all", "--quiet"]);
        await waitFor("beta's load in flight", () => alphaDoneBetaLoading(emulator));
        // alpha's result is on stdout while beta is still being tested.
        await waitFor("alpha's result on stdout", () => resultLine("alpha").test(run.seen.stdout));
        assert.doesNotMatch(run.seen.stdout, /^beta/m);
        run.child.kill(signal);
        const stopped = await run.done;
        assert.equal(stopped.code, signal === "SIGINT" ? 130 : 143, stopped.stderr);
        assert.match(stopped.stdout, resultLine("alpha"));
        assert.match(
          stopped.stderr,
          /^Summary: tested 1, failed 0, kept 0, skipped 0, not done 1, took [\d.]+ s$/m,
        );
        assert.match(
          stopped.stderr,
          new RegExp(`^error: Stopped by ${signal}; progress is saved`, "m"),
        );
        assertNoStackTrace(stopped.stderr);
      });
    });
  }
});

Deno.test("test --all --json prints one document when a signal stops it: results so far, summary, stopped", async (t) => {
  const cases = [["SIGINT", "interrupted", 130], ["SIGTERM", "terminated", 143]] as const;
  for (const [signal, stoppedAs, code] of cases) {
    await t.step(`${signal} ends as "${stoppedAs}" with exit ${code}`, async () => {
      await using home = await tempHome();
      await withEmulator(slowBeta(), async (emulator) => {
        assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
        const run = watch(emulator.url, home.path, ["test", "--all", "--json"]);
        await waitFor("beta's load in flight", () => alphaDoneBetaLoading(emulator));
        await waitFor("alpha done", () => /^\s*alpha: tested, working/m.test(run.seen.stderr));
        assert.equal(run.seen.stdout, "", "the document comes at the end, whole");
        run.child.kill(signal);
        const stopped = await run.done;
        assert.equal(stopped.code, code, stopped.stderr);
        const document = JSON.parse(stopped.stdout);
        assert.deepEqual(document.results.map((r: { id: string }) => r.id), ["alpha"]);
        const [alpha] = document.results;
        assert.equal(alpha.status, "tested");
        assert.equal(alpha.kept, false);
        assert.ok(alpha.loads > 0 && alpha.workingContext > 0);
        assert.deepEqual(Object.keys(document.summary), SUMMARY_KEYS);
        assert.deepEqual({ ...document.summary, seconds: 0 }, {
          tested: 1,
          failed: 0,
          kept: 0,
          skipped: 0,
          seconds: 0,
        });
        assert.ok(document.summary.seconds > 0);
        assert.ok(STOPPED_VALUES.includes(document.stopped));
        assert.equal(document.stopped, stoppedAs);
        assert.deepEqual(document.skipped, [], "the same keys as a run that ended");
        assert.equal(document.error.exitCode, code);
        assert.match(document.error.message, new RegExp(`Stopped by ${signal}`));
        // The numbers are the stored ones, and beta resumes next time.
        const saved = await readRegistry(home.path);
        assert.equal(saved.alpha?.workingContext, alpha.workingContext);
        assert.notEqual(saved.beta?.status, "testing");
      });
    });
  }
});

Deno.test("LM Studio lost mid-run: exit 3, the results so far kept under --quiet, and a hint that rerunning resumes", async (t) => {
  for (const json of [false, true]) {
    await t.step(
      json ? "--json: stopped is server-lost" : "text, as a cron log gets it",
      async () => {
        await using home = await tempHome();
        await withEmulator(slowBeta(), async (emulator) => {
          await using proxy = startProxy(emulator.port);
          assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
          const args = ["test", "--all", "--quiet", ...(json ? ["--json"] : [])];
          const run = watch(proxy.url, home.path, args);
          await waitFor("beta's load in flight", () => alphaDoneBetaLoading(emulator));
          const down = proxy.restart(8_000); // LM Studio goes away and stays away
          const lost = await run.done;
          await down;
          assert.equal(lost.code, 3, lost.stderr);
          assert.match(
            lost.stderr,
            /^hint: progress is saved; start LM Studio again \("lms server start"\), then run the same\s+command to resume where it stopped$/m,
          );
          assertNoStackTrace(lost.stderr);
          if (json) {
            const document = JSON.parse(lost.stdout);
            assert.equal(document.stopped, "server-lost");
            assert.deepEqual(document.results.map((r: { id: string }) => r.id), ["alpha"]);
            assert.equal(document.summary.tested, 1);
            assert.equal(document.error.exitCode, 3);
          } else {
            assert.match(lost.stdout, resultLine("alpha"));
            assert.match(
              lost.stderr,
              /^Summary: tested 1, failed 0, kept 0, skipped 0, not done 1, took /m,
            );
          }
        });
        // And it does resume: beta goes on where it stopped.
        await withEmulator(fleet(), async (emulator) => {
          const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
          assert.equal(rerun.code, 0, rerun.stderr);
          assert.match(rerun.stderr, /beta \(resuming\)/);
          assert.match(rerun.stdout, /^alpha: kept, /m);
          assert.match(rerun.stdout, resultLine("beta"));
        });
      },
    );
  }
});

/** Every line of `text` fits 80 columns (79, the last one wraps on some terminals). */
function assertFits80(text: string, what: string): void {
  for (const line of text.split("\n")) {
    assert.ok([...line].length <= 79, `${what}, ${[...line].length} columns: ${line}`);
  }
}

/** The words of `text`, whatever the line breaks and indents. */
const words = (text: string) => text.split(/\s+/).filter(Boolean).join(" ");

Deno.test("at 80 columns test's output wraps at words: kept and skipped notes, -v lines, retry warnings", async () => {
  await using home = await tempHome();
  const longName = "lmstudio-community-meta-llama-3.1-8b-instruct-abliterated-q4_k_m-imatrix";
  const profiles = [
    ...fleet({ alpha: { faults: { dropOnPredict: [2] } } }),
    testProfile(longName, { sizeBytes: 3_000_000_000, declaredContext: 16384 }),
    testProfile("dud", { sizeBytes: 500_000_000, declaredContext: 16384, loadFailAbove: 1000 }),
  ];
  const env = { COLUMNS: "80" };
  await withEmulator(profiles, async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const first = await lmstrix(emulator, home.path, ["test", "--all", "-v"], env);
    assert.equal(first.code, 1, first.stderr);
    assertFits80(first.stdout, "stdout");
    assertFits80(first.stderr, "stderr");
    // The retry warning says what failed in a user's words, wrapped, not cut.
    assert.doesNotMatch(first.stderr, /\b(complete|countTokens) failed/);
    const warning = /^warning: alpha: a prediction failed \([^]*?\(retry 1\)$/m.exec(first.stderr);
    assert.ok(warning, first.stderr);
    assert.match(words(warning[0]), /; trying again \(retry 1\)$/);
    // -v lines: a model's answer, wrapped under its label.
    assert.match(first.stderr, /^ {4}answer: /m);
    // One format for an attempt: never the short "needle 10,620/131,072".
    assert.doesNotMatch(first.stderr, /needle [\d,]+\//);
    assert.match(first.stderr, /needle [\d,]+ tokens in ctx [\d,]+: (pass|fail)/);
    // The start of a model after the first says how much time is left.
    assert.match(first.stderr, /^\[2\/4\] \S+; about \d+ (s|min) left$/m);
    // "declared" on every result line; the long name shortened from the middle.
    const results = first.stdout.split("\n").filter((line) =>
      /^\S.*: (tested|failed|kept),/.test(line)
    );
    assert.equal(results.length, 4, first.stdout);
    for (const line of results) assert.match(line, /\bdeclared\b/);
    assert.match(first.stdout, /^lmstudio-com\S*…\S*imatrix: tested, working /m);
    assert.match(
      first.stderr,
      /^Summary: tested 3, failed 1, kept 0, skipped 0, took [\d.]+ s; failed: dud$/m,
    );

    const nightly = await lmstrix(emulator, home.path, ["test", "--all"], env);
    assert.equal(nightly.code, 0, nightly.stderr);
    assertFits80(nightly.stdout, "stdout");
    assertFits80(nightly.stderr, "stderr");
    const text = words(nightly.stdout);
    assert.ok(
      text.includes(
        `Kept the numbers of 3 models tested already: alpha, beta, ${longName} (--force tests ` +
          "them again).",
      ),
      nightly.stdout,
    );
    assert.ok(
      text.includes(
        "Skipped 1 model whose test failed and whose file did not change: dud (--retry-failed " +
          "tests them again).",
      ),
      nightly.stdout,
    );
    assert.match(nightly.stdout, /^Kept the numbers of 3 models tested already: alpha, beta,$/m);
  });
});

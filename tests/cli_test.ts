/**
 * The `lmstrix` CLI's outside contract, end to end: the JSON of `scan`, `list`, `status`, `show`
 * and `test`, the exit codes 0/1/2/3/4, `--quiet` and `--json` output discipline, results within
 * the precision of the emulator's known truth, nothing left loaded, and which models `test --all`
 * picks and in what order.
 *
 * Every run spawns the CLI exactly as users run it (tests/support/cli.ts) against the LM Studio
 * emulator started in this process on a free port, with small profiles whose limits are irregular.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type ModelProfile, profileTruth } from "../scripts/emulator/profile.ts";
import type { Emulator } from "../scripts/emulator/server.ts";
import { acquireLock } from "../src/registry/lock.ts";
import { lmstrixPaths } from "../src/paths.ts";
import {
  cliCommand,
  type CliRun,
  closedPort,
  runCli,
  runCliAgainst,
  tempHome,
} from "./support/cli.ts";
import {
  RECORD_KEYS,
  RECORD_STATUSES,
  RESULT_KEYS,
  STATUS_KEYS,
  SUMMARY_KEYS,
} from "./support/contract.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";
import { record } from "./support/records.ts";

/** Four small LLMs, each limited in its own irregular way, and an embedding model. */
const FLEET: ModelProfile[] = [
  testProfile("mid-guarded", {
    sizeBytes: 2_100_000_000,
    declaredContext: 32768,
    loadFailAbove: 23_457,
  }),
  testProfile("tiny-forgetful", {
    sizeBytes: 800_000_000,
    declaredContext: 16384,
    needleFailAbove: 9_871,
    needleFailMode: "wrong-number",
  }),
  testProfile("fitted-mlx", {
    sizeBytes: 3_000_000_000,
    format: "mlx",
    quantization: "4bit",
    declaredContext: 32768,
    fitAbove: 19_999,
  }),
  testProfile("broken-when-big", {
    sizeBytes: 1_500_000_000,
    declaredContext: 24576,
    brokenAbove: 17_333,
  }),
  {
    ...testProfile("embed-small", { sizeBytes: 100_000_000, declaredContext: 2048 }),
    type: "embedding",
    architecture: "nomic-bert",
  },
];
const LLM_IDS_SMALL_FIRST = ["tiny-forgetful", "broken-when-big", "mid-guarded", "fitted-mlx"];

function lmstrix(emulator: Emulator, home: string, args: string[]): Promise<CliRun> {
  return runCliAgainst(emulator.url, home, args);
}

/** Parses stdout as exactly one JSON document (throws on anything else). */
function oneDocument(run: CliRun): Record<string, unknown> {
  const value: unknown = JSON.parse(run.stdout);
  assert.equal(typeof value, "object");
  assert.ok(value !== null && !Array.isArray(value));
  return value as Record<string, unknown>;
}

function assertRecordShape(record: Record<string, unknown>): void {
  for (const key of RECORD_KEYS) assert.ok(key in record, `record has "${key}"`);
  assert.equal(typeof record.id, "string");
  assert.equal(typeof record.path, "string");
  assert.equal(typeof record.sizeBytes, "number");
  assert.equal(typeof record.architecture, "string");
  assert.equal(typeof record.declaredContext, "number");
  for (const key of ["loadableContext", "workingContext"]) {
    assert.ok(record[key] === null || Number.isSafeInteger(record[key]), `${key} number|null`);
  }
  assert.ok(RECORD_STATUSES.includes(String(record.status)));
  assert.ok(
    record.testedAt === null || !Number.isNaN(Date.parse(String(record.testedAt))),
    "testedAt is ISO 8601 or null",
  );
  assert.ok(record.error === null || typeof record.error === "string");
}

Deno.test("scan, list, status and show print the contract's JSON", async (t) => {
  await using home = await tempHome();
  await withEmulator(FLEET, async (emulator) => {
    await t.step(
      "scan --json lists every model, untested (the embedding model skipped)",
      async () => {
        const run = await lmstrix(emulator, home.path, ["scan", "--json"]);
        assert.equal(run.code, 0, run.stderr);
        const models = oneDocument(run).models as Record<string, unknown>[];
        assert.deepEqual(models.map((m) => m.id).sort(), FLEET.map((p) => p.modelKey).sort());
        for (const model of models) {
          assertRecordShape(model);
          assert.equal(model.status, model.type === "embedding" ? "skipped" : "untested");
          const source = FLEET.find((p) => p.modelKey === model.id)!;
          assert.equal(model.declaredContext, source.declaredContext);
          assert.equal(model.sizeBytes, source.sizeBytes);
          assert.equal(model.path, source.path);
        }
      },
    );
    await t.step(
      "list, piped, is one header and a line a model; the bar's legend on stderr",
      async () => {
        const run = await lmstrix(emulator, home.path, ["list"]);
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout.trimEnd().split("\n").length, 1 + FLEET.length);
        assert.match(run.stderr, /^context: # working {2}\+ loadable {2}\. declared$/m);
      },
    );
    await t.step("list --json gives the same records", async () => {
      const run = await lmstrix(emulator, home.path, ["list", "--json"]);
      assert.equal(run.code, 0, run.stderr);
      const models = oneDocument(run).models as Record<string, unknown>[];
      assert.equal(models.length, FLEET.length);
      models.forEach(assertRecordShape);
    });
    await t.step("status --json counts LLMs by status and shows no lock", async () => {
      const run = await lmstrix(emulator, home.path, ["status", "--json"]);
      assert.equal(run.code, 0, run.stderr);
      const status = oneDocument(run);
      for (const key of STATUS_KEYS) assert.ok(key in status, `status has "${key}"`);
      assert.equal(status.total, 4);
      assert.equal(status.untested, 4);
      assert.equal(status.testing, 0);
      assert.equal(status.tested, 0);
      assert.equal(status.failed, 0);
      assert.equal(status.lock, null);
    });
    await t.step("show --json finds a model by a unique part of its id", async () => {
      const run = await lmstrix(emulator, home.path, ["show", "forgetful", "--json"]);
      assert.equal(run.code, 0, run.stderr);
      const record = oneDocument(run);
      assertRecordShape(record);
      assert.equal(record.id, "tiny-forgetful");
    });
  });
});

Deno.test("test --all measures every LLM within precision of the truth, small models first", async (t) => {
  await using home = await tempHome();
  await withEmulator(FLEET, async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const run = await lmstrix(emulator, home.path, ["test", "--all", "--json", "--quiet"]);

    await t.step("it exits 0, prints one JSON document and nothing on stderr", () => {
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, "");
      oneDocument(run);
    });
    const results = oneDocument(run).results as Record<string, unknown>[];
    await t.step("results have the contract's keys, small models first, no embedding", () => {
      assert.deepEqual(results.map((r) => r.id), LLM_IDS_SMALL_FIRST);
      for (const result of results) {
        assert.deepEqual(Object.keys(result).sort(), [...RESULT_KEYS].sort());
        assert.equal(result.status, "tested");
        assert.equal(result.error, null);
        assert.ok(Number(result.loads) >= 1);
        assert.ok(Number(result.promptTokens) > 0);
      }
      const { summary, stopped } = oneDocument(run) as { summary: Record<string, number> } & {
        stopped: unknown;
      };
      assert.deepEqual(Object.keys(summary), SUMMARY_KEYS);
      assert.deepEqual({ ...summary, seconds: 0 }, {
        tested: 4,
        failed: 0,
        kept: 0,
        skipped: 0,
        seconds: 0,
      });
      const seconds = Number(summary.seconds);
      assert.ok(seconds > 0 && seconds < 120, `${seconds} s`);
      assert.equal(stopped, null);
      const loadedKeys = new Set(emulator.stats().loads.map((l) => l.modelKey));
      assert.ok(!loadedKeys.has("embed-small"), "the embedding model is never loaded");
      const order = emulator.stats().loads.map((l) => l.modelKey)
        .filter((key, i, all) => all.indexOf(key) === i);
      assert.deepEqual(order, LLM_IDS_SMALL_FIRST, "the smallest model is tested first");
    });
    await t.step("every number is within precision of the truth and never above it", async () => {
      const stored = JSON.parse(
        await Deno.readTextFile(join(home.path, "lmstrix", "models.json")),
      ) as { models: Record<string, { precision: number }> };
      for (const result of results) {
        const truth = profileTruth(FLEET.find((p) => p.modelKey === result.id)!);
        const precision = stored.models[String(result.id)]!.precision;
        const loadable = Number(result.loadableContext);
        const working = Number(result.workingContext);
        const what = `${result.id}: loadable ${loadable} (truth ${truth.loadable}), working ` +
          `${working} (truth ${truth.working}), precision ${precision}`;
        assert.ok(loadable <= truth.loadable && loadable >= truth.loadable - precision, what);
        assert.ok(working <= truth.working + 64, what);
        assert.ok(working >= truth.workingFloor - precision, what);
        assert.ok(working <= loadable, what);
        const declared = Number(result.declaredContext);
        assert.equal(result.reductionPercent, Math.round((1 - working / declared) * 1000) / 10);
      }
    });
    await t.step("nothing is left loaded", () => {
      assert.deepEqual(emulator.stats().loaded, []);
    });
    await t.step("list --json and status --json show the results", async () => {
      const list = oneDocument(await lmstrix(emulator, home.path, ["list", "--json"]));
      for (const result of results) {
        const record = (list.models as Record<string, unknown>[]).find((m) => m.id === result.id)!;
        assert.equal(record.status, "tested");
        assert.equal(record.loadableContext, result.loadableContext);
        assert.equal(record.workingContext, result.workingContext);
        assert.ok(!Number.isNaN(Date.parse(String(record.testedAt))));
      }
      const embedding = (list.models as Record<string, unknown>[]).find((m) =>
        m.id === "embed-small"
      );
      assert.equal(embedding?.status, "skipped");
      const status = oneDocument(await lmstrix(emulator, home.path, ["status", "--json"]));
      assert.equal(status.tested, 4);
      assert.equal(status.untested, 0);
    });
    await t.step("test --all again skips tested models and loads nothing", async () => {
      const loadsBefore = emulator.stats().loads.length;
      const again = await lmstrix(emulator, home.path, ["test", "--all", "--json"]);
      assert.equal(again.code, 0, again.stderr);
      // Each comes back with its numbers, marked kept; nothing was tested.
      const document = oneDocument(again);
      const kept = document.results as Record<string, unknown>[];
      assert.deepEqual(kept.map((r) => r.id), LLM_IDS_SMALL_FIRST);
      for (const r of kept) {
        assert.equal(r.kept, true);
        assert.equal(r.loads, 0);
        assert.equal(typeof r.workingContext, "number");
      }
      assert.deepEqual(document.summary, { ...(document.summary as object), tested: 0, kept: 4 });
      assert.equal(document.stopped, null);
      assert.equal(emulator.stats().loads.length, loadsBefore);
    });
    await t.step("test --all --force tests them again", async () => {
      const loadsBefore = emulator.stats().loads.length;
      const forced = await lmstrix(emulator, home.path, ["test", "--all", "--force", "--json"]);
      assert.equal(forced.code, 0, forced.stderr);
      const again = oneDocument(forced).results as Record<string, unknown>[];
      assert.deepEqual(again.map((r) => r.id), LLM_IDS_SMALL_FIRST);
      assert.ok(again.every((r) => r.kept === false));
      assert.ok(emulator.stats().loads.length > loadsBefore);
      assert.deepEqual(emulator.stats().loaded, []);
    });
    await t.step("an embedding model named on the command line is refused", async () => {
      const refused = await lmstrix(emulator, home.path, ["test", "embed-small"]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /embedding model/);
    });
  });
});

Deno.test("--quiet drops progress only: results and errors still print", async (t) => {
  await using home = await tempHome();
  await withEmulator([FLEET[1]!], async (emulator) => {
    for (
      const args of [["scan", "-q"], ["test", "tiny", "-q"], ["list", "-q"], ["status", "-q"], [
        "show",
        "tiny",
        "-q",
      ]]
    ) {
      await t.step(`lmstrix ${args.join(" ")}`, async () => {
        const run = await lmstrix(emulator, home.path, args);
        assert.equal(run.code, 0, run.stderr);
        // A test run ends with its summary line even so: a cron log says what the night did.
        assert.equal(
          run.stderr.replace(/^Summary: tested 1, failed 0, kept 0, skipped 0, took .*\n/, ""),
          "",
        );
        assert.equal(run.stderr !== "", args[0] === "test", run.stderr);
        assert.match(run.stdout, args[0] === "status" ? /^LLMs: 1 / : /tiny-forgetful/);
      });
    }
    await t.step("scan -q names what it found, test -q gives the numbers", async () => {
      await using fresh = await tempHome();
      const scan = await lmstrix(emulator, fresh.path, ["scan", "-q"]);
      assert.match(scan.stdout, /^Found 1 model .*: 1 new/m);
      assert.match(scan.stdout, /^ {2}\+ tiny-forgetful$/m);
      const test = await lmstrix(emulator, fresh.path, ["test", "tiny", "-q"]);
      assert.match(test.stdout, /^tiny-forgetful: tested, working [\d,]+ of 16,384 declared/m);
      assert.match(
        test.stderr,
        /^Summary: tested 1, failed 0, kept 0, skipped 0, took [\d.]+ s\n$/,
      );
    });
    await t.step("errors still print under --quiet", async () => {
      const run = await lmstrix(emulator, home.path, ["show", "no-such-model", "-q"]);
      assert.equal(run.code, 2);
      assert.match(run.stderr, /^error: No model matches "no-such-model"/m);
    });
    await t.step("without --quiet, test reports progress on stderr", async () => {
      const run = await lmstrix(emulator, home.path, ["test", "tiny", "--force"]);
      assert.equal(run.code, 0);
      assert.match(run.stderr, /tiny-forgetful/);
    });
  });
});

Deno.test("exit codes: 1 untestable, 2 bad input, 3 unreachable, 4 locked", async (t) => {
  await using home = await tempHome();
  const unloadable = testProfile("never-loads", { sizeBytes: 900_000_000, loadFailAbove: 1_000 });
  await withEmulator([FLEET[1]!, unloadable], async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    await t.step("1: a model that cannot be tested; its record says why", async () => {
      const run = await lmstrix(emulator, home.path, ["test", "--all", "--json"]);
      assert.equal(run.code, 1, run.stderr);
      const results = oneDocument(run).results as Record<string, unknown>[];
      const failed = results.find((r) => r.id === "never-loads")!;
      assert.equal(failed.status, "failed");
      assert.equal(failed.loadableContext, null);
      assert.match(String(failed.error), /did not load/);
      assert.equal(results.find((r) => r.id === "tiny-forgetful")?.status, "tested");
      const shown = oneDocument(await lmstrix(emulator, home.path, ["show", "never", "--json"]));
      assert.equal(shown.status, "failed");
      assert.match(String(shown.error), /did not load/);
    });
    await t.step("2: an unknown model", async () => {
      const run = await lmstrix(emulator, home.path, ["test", "no-such-model"]);
      assert.equal(run.code, 2);
      assert.match(run.stderr, /^error: No model matches "no-such-model"/m);
    });
    await t.step("4: another process holds the lock", async () => {
      await using _lock = await acquireLock(lmstrixPaths(home.path), { pid: 424242 });
      const run = await lmstrix(emulator, home.path, ["test", "tiny", "--force"]);
      assert.equal(run.code, 4, run.stderr);
      assert.match(run.stderr, /pid 424242/);
    });
  });
  for (const args of [["scan"], ["test", "--all"]]) {
    await t.step(`3: ${args.join(" ")} against a closed port, one line and a hint`, async () => {
      await using fresh = await tempHome();
      if (args[0] === "test") {
        // Give test something to do, so it has to reach LM Studio.
        await withEmulator([FLEET[1]!], async (emulator) => {
          assert.equal((await lmstrix(emulator, fresh.path, ["scan", "-q"])).code, 0);
        });
      }
      const server = `ws://127.0.0.1:${closedPort()}`;
      const run = await runCli([...args, "--server", server], { home: fresh.path });
      assert.equal(run.code, 3, run.stderr);
      const lines = run.stderr.trimEnd().split("\n");
      assert.equal(run.stderr.match(/^error: /gm)?.length, 1, run.stderr);
      assert.match(lines.at(-2)!, new RegExp(`^error: Cannot reach LM Studio at "${server}"`));
      assert.match(lines.at(-1)!, /^hint: /);
      assert.doesNotMatch(run.stderr, /^\s+at /m);
      assert.equal(run.stdout, "");
    });
  }
});

Deno.test("no command prints the usage on stderr and exits 2", async () => {
  await using home = await tempHome();
  const run = await runCli([], { home: home.path });
  assert.equal(run.code, 2);
  assert.equal(run.stdout, "");
  assert.match(run.stderr, /^Usage: lmstrix /);
  assert.match(run.stderr, /Commands:/);
});

Deno.test("--json failures print one error document on stdout", async (t) => {
  await using home = await tempHome();
  const cases: [string, string[], number, RegExp][] = [
    ["an unknown model", ["show", "nothing-like-it", "--json"], 2, /No model matches/],
    ["a bad flag value", ["list", "--json", "--sort", "colour"], 2, /--sort/],
    [
      "LM Studio unreachable",
      ["scan", "--json", "--server", `ws://127.0.0.1:${closedPort()}`],
      3,
      /Cannot reach LM Studio/,
    ],
  ];
  for (const [what, args, code, message] of cases) {
    await t.step(what, async () => {
      const run = await runCli(args, { home: home.path });
      assert.equal(run.code, code, run.stderr);
      const document = oneDocument(run) as { error: { exitCode: number; message: string } };
      assert.deepEqual(Object.keys(document), ["error"]);
      assert.equal(document.error.exitCode, code);
      assert.match(document.error.message, message);
      assert.match(run.stderr, /^error: /m, "people still read the error on stderr");
    });
  }
});

Deno.test("--timeout: scan accepts it, and more than a day is refused before anything runs", async (t) => {
  await using home = await tempHome();
  await withEmulator([FLEET[1]!], async (emulator) => {
    await t.step("scan --timeout 5", async () => {
      const run = await lmstrix(emulator, home.path, ["scan", "--timeout", "5", "--json"]);
      assert.equal(run.code, 0, run.stderr);
    });
    for (const args of [["test", "tiny", "--timeout", "2147483"], ["scan", "--timeout", "1e9"]]) {
      await t.step(args.join(" "), async () => {
        const loads = emulator.stats().loads.length;
        const run = await lmstrix(emulator, home.path, args);
        assert.equal(run.code, 2, run.stderr);
        assert.match(run.stderr, /^error: .*--timeout/m);
        assert.equal(emulator.stats().loads.length, loads, "nothing was loaded");
      });
    }
    await t.step("LMSTRIX_TIMEOUT above a day is refused too", async () => {
      const run = await runCliAgainst(emulator.url, home.path, ["test", "tiny", "--force"], {
        LMSTRIX_TIMEOUT: "2147483",
      });
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /more than a day/);
    });
  });
});

Deno.test("a reader that goes away stops the run like an interrupt, quietly", async (t) => {
  await t.step("list | head: exit 141, no error", async () => {
    await using home = await tempHome();
    const models: Record<string, unknown> = {};
    for (let i = 0; i < 3000; i++) {
      const id = `model-${String(i).padStart(4, "0")}`;
      models[id] = record(id, { path: `x/${id}.gguf`, sizeBytes: 1e9 });
    }
    await Deno.mkdir(join(home.path, "lmstrix"), { recursive: true });
    await Deno.writeTextFile(
      join(home.path, "lmstrix", "models.json"),
      JSON.stringify({ schemaVersion: 1, updatedAt: null, models }),
    );
    const child = cliCommand(["list"], { home: home.path }).spawn();
    const reader = child.stdout.getReader();
    await reader.read(); // The first bytes, as `head -1` reads them; then the reader leaves.
    await reader.cancel();
    const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
    assert.equal(status.code, 141, stderr);
    assert.equal(stderr, "");
  });

  await t.step("test 2>&1 | head: unloads, saves, exits 141", async () => {
    await using home = await tempHome();
    const slow = testProfile("slow-model", { realDelayMs: { load: 300, predict: 200 } });
    await withEmulator([slow], async (emulator) => {
      assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
      const child = cliCommand(["test", "slow"], {
        home: home.path,
        env: { LMSTRIX_SERVER: emulator.url },
      }).spawn();
      const stdout = new Response(child.stdout).text();
      const reader = child.stderr.getReader();
      let seen = "";
      while (!seen.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
      await reader.cancel();
      const status = await child.status;
      assert.equal(status.code, 141, `stdout: ${await stdout}`);
      assert.doesNotMatch(await stdout, /Unexpected/);
      assert.deepEqual(emulator.stats().loaded, [], "nothing is left loaded");
      const shown = oneDocument(await lmstrix(emulator, home.path, ["status", "--json"]));
      assert.equal(shown.lock, null, "the lock is free");
      assert.equal(shown.testing, 0, "the model does not stay 'testing'");
    });
  });
});

Deno.test("a hostile model listing: keys escaped on a terminal, exact in JSON, odd numbers kept as failed", async (t) => {
  await using home = await tempHome();
  const evil = "evil\x1b]0;owned\x07\x1b[2J\nsplit\u0000key";
  const profiles = [
    testProfile("tiny-ok", { sizeBytes: 800_000_000, declaredContext: 8192 }),
    testProfile(evil, { sizeBytes: 900_000_000, declaredContext: 8192 }),
    testProfile("constructor", { sizeBytes: 950_000_000, declaredContext: 8192 }),
    testProfile("toString", { sizeBytes: 960_000_000, declaredContext: 8192 }),
    testProfile("zero-context", { sizeBytes: 970_000_000, declaredContext: 8192 }),
  ];
  const raw = (run: CliRun) => run.stdout + run.stderr;
  const assertNoEscapes = (run: CliRun) => {
    assert.ok(
      !raw(run).includes("\x1b"),
      `an escape reached the terminal: ${JSON.stringify(raw(run))}`,
    );
    assert.ok(!raw(run).includes("\u0000"), "a NUL reached the terminal");
  };
  await withEmulator(profiles, async (emulator) => {
    await t.step("scan --json keeps every key exactly", async () => {
      const run = await lmstrix(emulator, home.path, ["scan", "--json"]);
      assert.equal(run.code, 0, run.stderr);
      const models = oneDocument(run).models as Record<string, unknown>[];
      assert.deepEqual(models.map((m) => m.id).sort(), profiles.map((p) => p.modelKey).sort());
      // The emulator only lists sane numbers; a declared context of 0 comes from the file here
      // (a scan stores LM Studio's impossible numbers as 0: tests/registry_test.ts).
      const file = join(home.path, "lmstrix", "models.json");
      const stored = JSON.parse(await Deno.readTextFile(file));
      stored.models["zero-context"].declaredContext = 0;
      await Deno.writeTextFile(file, JSON.stringify(stored));
    });
    await t.step("list and show print the keys escaped, one line each", async () => {
      const list = await lmstrix(emulator, home.path, ["list"]);
      assert.equal(list.code, 0, list.stderr);
      assertNoEscapes(list);
      assert.equal(list.stdout.trimEnd().split("\n").length, 1 + profiles.length);
      assert.match(list.stdout, /^evil\\x1b\]0;owned\\x07\\x1b\[2J\\nsplit\\x00key /m);
      for (const args of [["show", "evil"], ["show", "constructor"], ["show", "toString"]]) {
        const show = await lmstrix(emulator, home.path, args);
        assert.equal(show.code, 0, show.stderr);
        assertNoEscapes(show);
      }
      const shown = oneDocument(
        await lmstrix(emulator, home.path, ["show", "constructor", "--json"]),
      );
      assert.equal(shown.id, "constructor");
    });
    await t.step("test --all fails the model with no context and tests the rest", async () => {
      const run = await lmstrix(emulator, home.path, ["test", "--all", "--json"]);
      assert.equal(run.code, 1, run.stderr);
      const results = oneDocument(run).results as Record<string, unknown>[];
      const status = Object.fromEntries(results.map((r) => [r.id, r.status]));
      assert.equal(status["tiny-ok"], "tested");
      assert.equal(status["constructor"], "tested");
      // The SDK itself refuses to load a key with control characters: failed, with its reason.
      assert.equal(status[evil], "failed", JSON.stringify(results));
      assert.match(String(results.find((r) => r.id === evil)!.error), /Control characters/);
      assert.equal(status["zero-context"], "failed");
      const zero = results.find((r) => r.id === "zero-context")!;
      assert.match(String(zero.error), /declares a context of 0 tokens/);
      const human = await lmstrix(emulator, home.path, ["test", "evil", "--force"]);
      assert.equal(human.code, 1, human.stderr);
      assertNoEscapes(human);
      const scan = await lmstrix(emulator, home.path, ["scan"]);
      assert.equal(scan.code, 0, scan.stderr);
      assertNoEscapes(scan);
    });
  });
});

Deno.test("one damaged record: every command works, names it, and keeps it until a scan replaces it", async () => {
  await using home = await tempHome();
  const registryFile = join(home.path, "lmstrix", "models.json");
  await withEmulator([FLEET[1]!], async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const stored = JSON.parse(await Deno.readTextFile(registryFile));
    stored.models["tiny-forgetful"].sizeBytes = -1;
    stored.models["gone-model"] = { id: "gone-model", status: "great" };
    await Deno.writeTextFile(registryFile, JSON.stringify(stored));
    for (const args of [["list"], ["status"], ["list", "--json"]]) {
      const run = await lmstrix(emulator, home.path, args);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, /^warning: The registry's record of "gone-model" has "path"/m);
      assert.match(run.stderr, /record of "tiny-forgetful" has "sizeBytes"/);
    }
    const scan = await lmstrix(emulator, home.path, ["scan"]);
    assert.equal(scan.code, 0, scan.stderr);
    assert.doesNotMatch(scan.stderr, /tiny-forgetful/, "the scan replaced that record");
    const after = JSON.parse(await Deno.readTextFile(registryFile));
    assert.deepEqual(after.models["gone-model"], { id: "gone-model", status: "great" });
    assert.equal(after.models["tiny-forgetful"].sizeBytes, FLEET[1]!.sizeBytes);
  });
});

Deno.test("--min-context or --max-context too small for a needle probe is a usage error, in one plain line", async (t) => {
  await using home = await tempHome();
  await withEmulator([FLEET[1]!], async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    for (
      const args of [["--min-context", "1"], ["--min-context", "65"], ["--max-context", "100"]]
    ) {
      await t.step(args.join(" "), async () => {
        const run = await lmstrix(emulator, home.path, ["test", "tiny", "--force", ...args]);
        assert.equal(run.code, 2, run.stderr);
        assert.match(run.stderr, /^error: --m..-context must be at least 256 tokens/m);
        assert.doesNotMatch(run.stderr, /reserve \(64\)|Search|Unexpected/);
        assert.deepEqual(emulator.stats().loads, []);
      });
    }
  });
});

Deno.test("links are not followed when writing, and no file's content is echoed", async (t) => {
  const victimText = "SECRET_TOKEN=hunter2\n";
  await withEmulator([FLEET[1]!], async (emulator) => {
    await t.step(
      "lmstrix.lock is a link to another file: refused, the file untouched",
      async () => {
        await using home = await tempHome();
        const victim = join(home.path, "victim.txt");
        await Deno.writeTextFile(victim, victimText);
        await Deno.mkdir(join(home.path, "lmstrix"), { recursive: true });
        await Deno.symlink(victim, join(home.path, "lmstrix", "lmstrix.lock"));
        const run = await lmstrix(emulator, home.path, ["scan"]);
        assert.equal(run.code, 2, run.stderr);
        assert.match(run.stderr, /symbolic link/);
        assert.equal(await Deno.readTextFile(victim), victimText);
      },
    );
    await t.step(
      "an attempt log is a link to another file: nothing is appended to it",
      async () => {
        await using home = await tempHome();
        await Deno.mkdir(join(home.path, "models")); // An LM Studio home holding another file.
        const victim = join(home.path, "victim.txt");
        await Deno.writeTextFile(victim, victimText);
        assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
        const logs = join(home.path, "lmstrix", "context_tests");
        await Deno.mkdir(logs, { recursive: true });
        await Deno.symlink(victim, join(logs, "tiny-forgetful_context_test.log"));
        const run = await lmstrix(emulator, home.path, ["test", "tiny"]);
        assert.notEqual(run.code, 0);
        assert.match(run.stderr, /symbolic link/);
        assert.equal(await Deno.readTextFile(victim), victimText);
        assert.deepEqual(emulator.stats().loaded, [], "nothing is left loaded");
      },
    );
    await t.step("models.json is a link to a secret: the error does not quote it", async () => {
      await using home = await tempHome();
      const victim = join(home.path, "victim.txt");
      await Deno.writeTextFile(victim, victimText);
      await Deno.mkdir(join(home.path, "lmstrix"), { recursive: true });
      await Deno.symlink(victim, join(home.path, "lmstrix", "models.json"));
      for (const args of [["list"], ["status", "--json"]]) {
        const run = await lmstrix(emulator, home.path, args);
        assert.equal(run.code, 2, run.stderr);
        assert.doesNotMatch(run.stdout + run.stderr, /SECRET|hunter2/);
        assert.match(run.stderr, /not valid JSON/);
      }
      assert.equal(await Deno.readTextFile(victim), victimText);
    });
  });
});

Deno.test("a bad --lmstudio-dir is refused with exit 2 and a hint, and nothing is created", async (t) => {
  await using home = await tempHome();
  const file = join(home.path, "a-file");
  await Deno.writeTextFile(file, "x");
  const misspelled = join(home.path, ".lmstuido");
  const cases: [string, string, RegExp][] = [
    ["empty", "", /--lmstudio-dir is empty/],
    ["misspelled", misspelled, /does not exist/],
    ["a file", file, /is not a directory/],
    ["a path through a file", join(file, "below"), /does not exist/],
    ["not LM Studio's", new URL("../", import.meta.url).pathname, /does not look like/],
  ];
  for (const [what, dir, message] of cases) {
    for (const command of [["scan"], ["list"]]) {
      await t.step(`${what}: ${command[0]}`, async () => {
        const run = await runCli([
          ...command,
          "--lmstudio-dir",
          dir,
          "--server",
          "ws://127.0.0.1:1",
        ], {
          home: home.path,
        });
        assert.equal(run.code, 2, run.stderr);
        assert.match(run.stderr, new RegExp(`^error: .*${message.source}`, "m"));
        assert.match(run.stderr, /^hint: .*--lmstudio-dir/m);
      });
    }
  }
  assert.equal(await Deno.stat(misspelled).catch(() => null), null, "nothing was created");
  assert.equal(await Deno.readTextFile(file), "x");
});

Deno.test("a relative --lmstudio-dir under deno task is the caller's, not the project's", async () => {
  await using caller = await tempHome();
  const home = join(caller.path, "my-lmstudio");
  await Deno.mkdir(join(home, "models"), { recursive: true });
  const config = new URL("../deno.json", import.meta.url).pathname;
  const output = await new Deno.Command("deno", {
    args: [
      "task",
      "--config",
      config,
      "start",
      "status",
      "--json",
      "--lmstudio-dir",
      "my-lmstudio",
    ],
    cwd: caller.path,
    // As from a user's shell: no INIT_CWD yet (this suite's own `deno task test` set one).
    clearEnv: true,
    env: Object.fromEntries(
      Object.entries(Deno.env.toObject()).filter(([name]) => name !== "INIT_CWD")
        .concat([["NO_COLOR", "1"]]),
    ),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.equal(JSON.parse(new TextDecoder().decode(output.stdout)).total, 0);
});

Deno.test("a server that is not LM Studio, or never answers, or wss://: exit 3 and one plain line", async (t) => {
  await using home = await tempHome();
  const web = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("not here", { status: 404 }),
  );
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const connection of silent) held.push(connection);
    } catch {
      // Closed at the end of the test.
    }
  })();
  try {
    const cases: [string, string[], Record<string, string>, RegExp][] = [
      ["an HTTP server", ["--server", `ws://127.0.0.1:${web.addr.port}`], {}, /not LM Studio.*404/],
      ["wss://", ["--server", `wss://127.0.0.1:${web.addr.port}`], {}, /secure connection failed/],
      [
        "a silent server, --timeout 1",
        ["--server", `ws://127.0.0.1:${(silent.addr as Deno.NetAddr).port}`, "--timeout", "1"],
        {},
        /did not answer/,
      ],
      [
        "a silent server, LMSTRIX_TIMEOUT=1",
        ["--server", `ws://127.0.0.1:${(silent.addr as Deno.NetAddr).port}`],
        { LMSTRIX_TIMEOUT: "1" },
        /did not answer/,
      ],
    ];
    for (const [what, args, env, reason] of cases) {
      await t.step(`scan against ${what}`, async () => {
        const started = performance.now();
        const run = await runCli(["scan", ...args], { home: home.path, env });
        assert.equal(run.code, 3, run.stderr);
        const errors = run.stderr.split("\n").filter((line) => line.startsWith("error: "));
        assert.equal(errors.length, 1, run.stderr);
        assert.match(errors[0]!, /^error: Cannot reach LM Studio at "wss?:\/\/127\.0\.0\.1:\d+": /);
        assert.match(errors[0]!, reason);
        assert.doesNotMatch(run.stderr, /Unexpected failure|^\s+at /m);
        assert.ok(performance.now() - started < 30_000, "the deadline bounds the wait");
      });
    }
  } finally {
    silent.close();
    for (const connection of held) connection.close();
    await accepting;
    await web.shutdown();
  }
});

Deno.test("scan names what changed; a changed file makes the results stale and the model untested", async () => {
  await using home = await tempHome();
  const before = testProfile("swap-model", { sizeBytes: 800_000_000, declaredContext: 8192 });
  await withEmulator([before], async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    assert.equal((await lmstrix(emulator, home.path, ["test", "swap", "-q"])).code, 0);
  });
  const after = {
    ...before,
    path: "test/swap-model/swap-model-Q5_K_M.gguf",
    quantization: "Q5_K_M",
    sizeBytes: 950_000_000,
  };
  await withEmulator([after], async (emulator) => {
    const scan = await lmstrix(emulator, home.path, ["scan"]);
    assert.equal(scan.code, 0, scan.stderr);
    assert.match(scan.stdout, /: 0 new, 1 updated, 0 missing\./);
    assert.match(
      scan.stdout,
      /^ {2}~ swap-model: path test\/swap-model\/swap-model-Q4_K_M\.gguf -> test\/swap-model\/swap-model-Q5_K_M\.gguf, size 800000000 -> 950000000 bytes, quantization Q4_K_M -> Q5_K_M$/m,
    );
    assert.match(scan.stdout, /its file changed: earlier results kept as stale/);
    const list = await lmstrix(emulator, home.path, ["list"]);
    assert.match(list.stdout, /^swap-model\s+8,192\s+\([\d,]+\)\s+\([\d,]+\)\s+-\s+stale\s/m);
    const shown = await lmstrix(emulator, home.path, ["show", "swap"]);
    assert.match(shown.stdout, /^status +untested \(stale results\)$/m);
    assert.match(shown.stdout, /^stale +tested .*Z with another file: loadable \d+, working \d+/m);
    const record = oneDocument(await lmstrix(emulator, home.path, ["show", "swap", "--json"]));
    assert.equal(record.status, "untested");
    assert.equal(record.workingContext, null);
    const again = await lmstrix(emulator, home.path, ["test", "--all", "--json"]);
    assert.deepEqual((oneDocument(again).results as { id: string }[]).map((r) => r.id), [
      "swap-model",
    ]);
  });
});

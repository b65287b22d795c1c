/**
 * `lmstrix test <model> --ctx N`, the one-size check, end to end against the emulator: each of
 * the three verdicts with what LM Studio answered (loaded, refused, fitted), the contract's
 * `--json`, the attempt log as evidence while the registry's limits stay, the note when a verdict
 * contradicts them, usage errors, and an interrupt that leaves nothing loaded.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import type { Emulator } from "../scripts/emulator/server.ts";
import { LMStrix, UsageError } from "../mod.ts";
import { contradiction } from "../src/engine/check_one.ts";
import { lmstrixPaths } from "../src/paths.ts";
import { loadRegistry, saveRegistry } from "../src/registry/registry.ts";
import { type CliRun, tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";
import {
  assertNoStackTrace,
  lmstrix,
  loadInFlight,
  readLog,
  spawnCli,
  waitFor,
} from "./support/reliability.ts";

const FLEET: ModelProfile[] = [
  testProfile("guarded", { declaredContext: 32768, loadFailAbove: 23_457 }),
  testProfile("fitted-mlx", { format: "mlx", declaredContext: 32768, fitAbove: 19_999 }),
  testProfile("forgetful", {
    declaredContext: 16384,
    needleFailAbove: 9_871,
    needleFailMode: "wrong-number",
  }),
];

/** The contract's keys of `test --ctx --json`'s `check` object. */
const CHECK_KEYS = ["id", "context", "load", "loadedContext", "needle", "verdict"];

function checkOf(run: CliRun): Record<string, unknown> {
  assert.equal(run.code, 0, run.stderr);
  const document = JSON.parse(run.stdout) as { check: Record<string, unknown> };
  for (const key of CHECK_KEYS) assert.ok(key in document.check, `check has "${key}"`);
  return document.check;
}

async function scanned<T>(fn: (emulator: Emulator, home: string) => Promise<T>): Promise<T> {
  await using home = await tempHome();
  return await withEmulator(FLEET, async (emulator) => {
    const scan = await lmstrix(emulator, home.path, ["scan", "-q"]);
    assert.equal(scan.code, 0, scan.stderr);
    return await fn(emulator, home.path);
  });
}

Deno.test("test --ctx gives each verdict with what LM Studio answered, logs it, and leaves the limits", async (t) => {
  await scanned(async (emulator, home) => {
    const registryBefore = await Deno.readTextFile(join(home, "lmstrix", "models.json"));

    await t.step("works: loaded at the size, the needle filling it passes", async () => {
      const check = checkOf(
        await lmstrix(emulator, home, ["test", "guarded", "--ctx", "16k", "--json"]),
      );
      assert.deepEqual(
        Object.fromEntries(CHECK_KEYS.map((k) => [k, check[k]])),
        {
          id: "guarded",
          context: 16384,
          load: "loaded",
          loadedContext: 16384,
          needle: "pass",
          verdict: "works",
        },
      );
      const needle = emulator.stats().predictions.at(-1)!;
      assert.equal(needle.kind, "needle");
      assert.ok(needle.promptTokens > 16384 - 64 - 8 && needle.promptTokens <= 16384 - 64);
    });

    await t.step("does not load: refused, no needle", async () => {
      const check = checkOf(
        await lmstrix(emulator, home, ["test", "guarded", "--ctx", "24k", "--json"]),
      );
      assert.equal(check.load, "refused");
      assert.equal(check.loadedContext, null);
      assert.equal(check.needle, null);
      assert.equal(check.verdict, "does-not-load");
      const text = await lmstrix(emulator, home, ["test", "guarded", "--ctx", "24k"]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(
        text.stdout,
        /^guarded: does not load at 24,576\n {2}LM Studio refused the load/,
      );
      assert.match(text.stdout, /LM Studio said: .*insufficient system resources/s);
    });

    await t.step("does not load: fitted down by LM Studio counts as not loading", async () => {
      const check = checkOf(
        await lmstrix(emulator, home, ["test", "fitted-mlx", "--ctx", "24000", "--json"]),
      );
      assert.equal(check.load, "fitted");
      assert.equal(check.loadedContext, 19_999);
      assert.equal(check.needle, null);
      assert.equal(check.verdict, "does-not-load");
    });

    await t.step("loads but does not work: the needle fails", async () => {
      const run = await lmstrix(emulator, home, ["test", "forgetful", "--ctx", "12k"]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^forgetful: loads but does not work at 12,288\n/);
      assert.match(run.stdout, /loaded at 12,288; the needle probe of 12,2\d\d tokens failed/);
      assert.match(run.stderr, /needle/, "progress on stderr");
    });

    await t.step("--quiet keeps the verdict and drops the progress", async () => {
      const run = await lmstrix(emulator, home, ["test", "forgetful", "--ctx", "8k", "-q"]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, "");
      assert.match(run.stdout, /^forgetful: works at 8,192\n/);
    });

    await t.step(
      "the attempts are in the log, marked as a check; the registry is unchanged",
      async () => {
        const log = await readLog(home, "guarded");
        const checks = log.filter((line) => line.check !== undefined);
        assert.deepEqual(
          checks.map((l) => [l.check, l.action, l.outcome]),
          [[16384, "load", "loaded"], [16384, "needle", "pass"], [24576, "load", "refused"], [
            24576,
            "load",
            "refused",
          ]],
        );
        assert.equal(
          log.filter((l) => l.event === "run-start").length,
          3,
          "each check opens its lines",
        );
        const show = await lmstrix(emulator, home, ["show", "guarded"]);
        assert.equal(show.code, 0, show.stderr);
        assert.match(show.stdout, /one-size check needle 16,3\d\d tokens in ctx 16,384: pass/);
        assert.match(show.stdout, /one-size check load ctx 24,576: refused/);
        assert.equal(
          await Deno.readTextFile(join(home, "lmstrix", "models.json")),
          registryBefore,
          "the registry's limits and statuses are not touched",
        );
        assert.deepEqual(emulator.stats().loaded, [], "nothing is left loaded");
      },
    );
  });
});

Deno.test("test --ctx says when the verdict contradicts the stored limits", async () => {
  await scanned(async (emulator, home) => {
    const paths = lmstrixPaths(home);
    const registry = await loadRegistry(paths);
    registry.models["guarded"] = {
      ...registry.models["guarded"]!,
      status: "tested",
      loadableContext: 16384,
      workingContext: 8192,
      testedAt: "2026-01-01T00:00:00.000Z",
    };
    await saveRegistry(paths, registry);
    const json = checkOf(
      await lmstrix(emulator, home, ["test", "guarded", "--ctx", "12k", "--json"]),
    );
    assert.equal(json.verdict, "works");
    assert.match(String(json.contradiction), /above the stored working context of 8,192/);
    const run = await lmstrix(emulator, home, ["test", "guarded", "--ctx", "12k"]);
    assert.match(
      run.stdout.replace(/\n\s+/g, " "),
      /note: It works at 12,288, above the stored working context of 8,192: the stored number may be low; run "lmstrix test --force guarded"/,
    );
    const after = await loadRegistry(paths);
    assert.equal(after.models["guarded"]?.workingContext, 8192, "the stored number stays");
  });
});

Deno.test("a check's contradictions of stored limits, case by case", async (t) => {
  const tested = {
    id: "m",
    status: "tested" as const,
    loadableContext: 32768,
    workingContext: 16384,
  };
  const cases: [number, "works" | "loads-but-fails" | "does-not-load", RegExp | null][] = [
    [8192, "works", null],
    [24576, "works", /may be low/],
    [24576, "loads-but-fails", null],
    [40000, "loads-but-fails", /loadable context of 32,768: the stored number may be low/],
    [8192, "loads-but-fails", /does not work at 8,192.*may be high/],
    [8192, "does-not-load", /does not load at 8,192.*working context/],
    [24576, "does-not-load", /does not load at 24,576.*loadable context of 32,768/],
    [40000, "does-not-load", null],
  ];
  for (const [size, verdict, expected] of cases) {
    await t.step(`${verdict} at ${size}`, () => {
      const note = contradiction(tested, size, verdict);
      if (expected === null) assert.equal(note, null);
      else assert.match(note ?? "", expected);
    });
  }
  await t.step("an untested model has nothing to contradict", () => {
    const untested = { ...tested, status: "untested" as const, loadableContext: null };
    assert.equal(contradiction({ ...untested, workingContext: null }, 8192, "works"), null);
  });
});

Deno.test("test --ctx usage errors exit 2 with one JSON error document", async (t) => {
  await scanned(async (emulator, home) => {
    const cases: [string, string[], RegExp][] = [
      ["with --all", ["test", "--all", "--ctx", "8k"], /takes no --all/],
      ["with two models", ["test", "guarded", "forgetful", "--ctx", "8k"], /name exactly one/],
      ["with --force", ["test", "guarded", "--force", "--ctx", "8k"], /takes no --force/],
      ["below a needle's size", ["test", "guarded", "--ctx", "100"], /at least 256 tokens/],
      ["not a number", ["test", "guarded", "--ctx", "lots"], /positive whole number/],
      ["unknown model", ["test", "nosuch", "--ctx", "8k"], /nosuch/],
    ];
    for (const [what, args, message] of cases) {
      await t.step(what, async () => {
        const run = await lmstrix(emulator, home, [...args, "--json"]);
        assert.equal(run.code, 2, run.stderr);
        const document = JSON.parse(run.stdout) as { error: { exitCode: number; message: string } };
        assert.equal(document.error.exitCode, 2);
        assert.match(document.error.message, message);
        assertNoStackTrace(run.stderr);
      });
    }
    await t.step("a model missing from LM Studio", async () => {
      const paths = lmstrixPaths(home);
      const registry = await loadRegistry(paths);
      registry.models["forgetful"] = { ...registry.models["forgetful"]!, status: "missing" };
      await saveRegistry(paths, registry);
      const run = await lmstrix(emulator, home, ["test", "forgetful", "--ctx", "8k"]);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /"forgetful" is missing from LM Studio/);
    });
    assert.equal(emulator.stats().loads.length, 0, "no usage error loads anything");
  });
});

Deno.test("Ctrl-C during a check's load exits 130 and leaves nothing loaded", async () => {
  await using home = await tempHome();
  const slow = FLEET.map((p) =>
    p.modelKey === "guarded" ? { ...p, realDelayMs: { load: 600 } } : p
  );
  await withEmulator(slow, async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const run = spawnCli(emulator, home.path, ["test", "guarded", "--ctx", "16k"]);
    await waitFor("the check's load in flight", () => loadInFlight(emulator.stats()));
    run.child.kill("SIGINT");
    const stopped = await run.done;
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.equal(stopped.stdout, "", "no verdict for a check cut short");
    assertNoStackTrace(stopped.stderr);
    await waitFor("the server to settle", () => !loadInFlight(emulator.stats()));
    assert.deepEqual(emulator.stats().loaded, [], "nothing is left loaded");
  });
});

Deno.test("the library's checkContext answers the check and throws on a bad size", async () => {
  await scanned(async (emulator, home) => {
    const lmstrix = new LMStrix({ server: emulator.url, lmstudioDir: home, backoffMs: 20 });
    const check = await lmstrix.checkContext("forgetful", 12288);
    assert.equal(check.verdict, "loads-but-fails");
    assert.equal(check.needle, "fail");
    assert.deepEqual(check.attempts.map((a) => a.action), ["load", "needle"]);
    await assert.rejects(() => lmstrix.checkContext("forgetful", 10), UsageError);
    assert.deepEqual(emulator.stats().loaded, []);
  });
});

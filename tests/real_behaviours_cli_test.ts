/**
 * The real LM Studio's behaviours end to end: the CLI as users run it, the real SDK, the emulator
 * playing each behaviour. A model with no runtime is failed in two loads with LM Studio's words; a
 * refusal with an exit code, auto-fit raising a request and an engine crash all give the right
 * numbers; the measured costs and the plan reach `show`, `list --json` and the attempt log; and a
 * paced emulator, whose loads take real time and whose guardrail refuses before any progress,
 * makes the search bisect with checks that cost a fraction of a load; a server that loads what a
 * check cancels stops the checks after two, and nothing is left loaded.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { TestResult } from "../src/engine/test_events.ts";
import { join } from "node:path";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import { profileTruth } from "../scripts/emulator/profile.ts";
import { startEmulator } from "../scripts/emulator/server.ts";
import { runCliAgainst, tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";
import { checksByModel, readLog } from "./support/reliability.ts";

const SMALL = { declaredContext: 16384, sizeBytes: 800_000_000, paramsString: "1B" } as const;

const PROFILES: ModelProfile[] = [
  testProfile("no-runtime", { ...SMALL, noRuntime: true, format: "mlx" }),
  testProfile("exit-code", { ...SMALL, loadFailAbove: 9000, refusal: "exit-code" }),
  testProfile("raised", {
    ...SMALL,
    fitUpTo: 12288,
    needleFailAbove: 6100,
    needleFailMode: "empty",
  }),
  testProfile("crashing", { ...SMALL, crashAbove: 7000, promptCache: false }),
];

/** One model's outcome in `test --json`. */
type Result = TestResult;

Deno.test("test --all meets each real LM Studio behaviour with the right numbers", async (t) => {
  await using home = await tempHome();
  await withEmulator(PROFILES, async (emulator) => {
    const cli = (...args: string[]) => runCliAgainst(emulator.url, home.path, args);
    assert.equal((await cli("scan", "--quiet")).code, 0);
    const run = await cli("test", "--all", "--json");
    assert.equal(run.code, 1, "one model could not be tested: exit 1");
    const { results } = JSON.parse(run.stdout) as { results: Result[] };
    const byId = Object.fromEntries(results.map((r) => [r.id, r]));

    await t.step("no runtime: failed in two requests, with LM Studio's reason", async () => {
      const r = byId["no-runtime"]!;
      assert.equal(r.status, "failed");
      // A load at the cap, then the floor: a check, since the refusal came before any progress.
      assert.equal(r.loads + ((await checksByModel(home.path)).get("no-runtime") ?? 0), 2);
      assert.match(r.error ?? "", /did not load at 2048 tokens or more: .*No LM Runtime found/);
    });
    for (const id of ["exit-code", "raised", "crashing"]) {
      await t.step(`${id}: tested, both numbers within the precision`, () => {
        const r = byId[id]!;
        const truth = profileTruth(PROFILES.find((p) => p.modelKey === id)!);
        assert.equal(r.status, "tested", r.error ?? "");
        assert.ok(r.loadableContext! <= truth.loadable);
        assert.ok(r.loadableContext! >= truth.loadable - 256);
        assert.ok(r.workingContext! <= truth.working + 64, `${r.workingContext}`);
        assert.ok(r.workingContext! >= truth.workingFloor - 256, `${r.workingContext}`);
      });
    }
    await t.step("the crash is in the attempt log and the instance was reloaded", async () => {
      const log = await Deno.readTextFile(
        join(home.path, "lmstrix", "context_tests", "crashing_context_test.log"),
      );
      assert.match(log, /The model has crashed without additional information/);
      assert.deepEqual(emulator.stats().loaded, [], "nothing left loaded");
    });
    await t.step("show prints the measured costs and the plan", async () => {
      const show = await cli("show", "crashing");
      assert.equal(show.code, 0);
      assert.match(show.stdout, /^prompt cache\s+none$/m);
      assert.match(
        show.stdout,
        /^plan\s+.*without a prompt cache, prompts grow by half, then narrow$/m,
      );
      assert.match(show.stdout, /^prefill\s+[\d,]+ tokens\/s at [\d,]+ tokens$/m);
      // The curve fitted to the run's own timings: the speed, and where attention doubles it.
      assert.match(show.stdout, /^prefill curve\s+[\d.]+ ms\/token, doubling at [\d,]+ tokens/m);
    });
    await t.step("list --json carries them", async () => {
      const list = await cli("list", "--json");
      type Curve = { doublingTokens: number; doublingMeasured: boolean };
      const { models } = JSON.parse(list.stdout) as {
        models: {
          id: string;
          costs: { promptCache: boolean | null; plan: string; prefillCurve?: Curve } | null;
        }[];
      };
      const raised = models.find((m) => m.id === "raised")!;
      assert.equal(raised.costs?.promptCache, true);
      // The emulator doubles a token's prefill cost at 24,576 tokens of depth: the fit finds it.
      const curve = raised.costs?.prefillCurve;
      assert.equal(curve?.doublingMeasured, true);
      assert.ok(Math.abs(curve!.doublingTokens / 24_576 - 1) < 0.2, `${curve?.doublingTokens}`);
      assert.match(raised.costs?.plan ?? "", /climb prompts on the cache/);
    });
  });
});

Deno.test("a paced emulator's slow loads and quick refusals make the search check", async () => {
  await using home = await tempHome();
  // A 40 GB model: a load takes 40 virtual seconds, 2 s real at this scale; a refusal 0.3 s,
  // and a check (a load cancelled at its first progress) 0.75 s.
  const big = testProfile("big", {
    declaredContext: 16384,
    sizeBytes: 40_000_000_000,
    loadFailAbove: 11000,
  });
  const emulator = await startEmulator({ profiles: [big], timeScale: 0.05 });
  try {
    const cli = (...args: string[]) => runCliAgainst(emulator.url, home.path, args);
    assert.equal((await cli("scan", "--quiet")).code, 0);
    assert.equal((await cli("test", "big", "--quiet")).code, 0);
    const show = await cli("show", "big");
    assert.match(show.stdout, /^plan\s+sizes are tried with loads stopped as they start/m);
    assert.match(show.stdout, /^took\s+a load \d+\.\d s, a refusal [^,]+, a check [^,]+$/m);
    // At 80 columns the plan wraps under its value; only the paths are printed whole.
    const narrow = await runCliAgainst(emulator.url, home.path, ["show", "big"], { COLUMNS: "80" });
    const long = narrow.stdout.split("\n").filter((line) => line.length > 80);
    assert.ok(long.every((line) => /^(path|log) /.test(line)), long.join("\n"));
    const plan = /^plan {2}(.*)\n((?: {14}.*\n)*)/m.exec(narrow.stdout);
    assert.ok(plan !== null && plan[2] !== "", narrow.stdout);
    const words = (plan[1] + " " + plan[2]).replace(/\s+/g, " ").trim();
    assert.equal(words, /^plan\s+(.*)$/m.exec(show.stdout)?.[1]);
    const log = (await readLog(home.path, "big")).filter((entry) => "action" in entry);
    const took = (action: string, outcome?: string) =>
      log.filter((entry) => entry.action === action && (outcome ?? entry.outcome) === entry.outcome)
        .map((entry) => Number(entry.durationMs));
    const [checks, loads] = [took("check"), took("load", "loaded")];
    assert.ok(checks.length >= 2 && loads.length >= 1, JSON.stringify(log));
    // Each check, started or refused, costs a fraction of a load.
    for (const ms of checks) assert.ok(ms < Math.min(...loads) / 5, `${checks} vs ${loads}`);
    assert.deepEqual(emulator.stats().loaded, []);
  } finally {
    await emulator.close();
  }
});

Deno.test("a server that loads what a check cancels: checks stop, nothing is left", async () => {
  await using home = await tempHome();
  const shape = { ...SMALL, loadFailAbove: 9000 };
  const profiles = [
    testProfile("guarded", shape),
    testProfile("stubborn", { ...shape, cancelIgnored: true }),
  ];
  // A hold, so that the guarded model's cancels come in time: only the stubborn one ignores them.
  await withEmulator(profiles, async (emulator) => {
    const cli = (...args: string[]) => runCliAgainst(emulator.url, home.path, args);
    assert.equal((await cli("scan", "--quiet")).code, 0);
    const run = await cli("test", "--all", "--json");
    assert.equal(run.code, 0, run.stderr);
    const { results } = JSON.parse(run.stdout) as { results: Result[] };
    for (const r of results) {
      assert.equal(r.status, "tested", r.error ?? "");
      assert.ok(r.loadableContext! <= 9000 && r.loadableContext! >= 9000 - 256, r.id);
    }
    assert.deepEqual(emulator.stats().loaded, [], "nothing is left loaded");
    const started = async (id: string) =>
      (await readLog(home.path, id)).filter((e) => e.action === "check" && e.outcome === "started")
        .length;
    // A check's own leftover is seen at once or by the sweep before the next request: the
    // checks stop after the second or the third.
    const stubborn = await started("stubborn");
    assert.ok(stubborn >= 2 && stubborn <= 3, `${stubborn} checks it loaded all the same`);
    assert.ok(await started("guarded") > 2, "the server that honours the cancel keeps checking");
    const decisions = (await readLog(home.path, "stubborn")).flatMap((e) =>
      typeof e.decision === "string" ? [e.decision] : []
    );
    assert.ok(decisions.some((d) => /checks/.test(d)), decisions.join("\n"));
    assert.ok(!/checks/.test(decisions.at(-1) ?? ""), "the last decision leaves checks");
  }, { cancelHoldMs: 100 });
});

Deno.test("a size that loaded once and fails every load after: a bounded test, what loads now", async () => {
  await using home = await tempHome();
  // The engine's memory shrinks after the first load: nothing above 8,000 loads from then on.
  const shrinking = testProfile("shrinking", {
    ...SMALL,
    loadFailAbove: 14000,
    refusal: "engine",
    shrinks: { afterLoads: 1, loadFailAbove: 8000 },
  });
  await withEmulator([shrinking], async (emulator) => {
    const cli = (...args: string[]) => runCliAgainst(emulator.url, home.path, args);
    assert.equal((await cli("scan", "--quiet")).code, 0);
    const run = await cli("test", "--all", "--json");
    const loads = emulator.stats().loads.filter((l) => l.modelKey === "shrinking");
    const first = loads.find((l) => l.ok);
    assert.ok(first !== undefined && first.askedContext! > 8000, JSON.stringify(first));
    const again = loads.filter((l) => l.askedContext === first.askedContext && !l.ok);
    assert.ok(again.length >= 1, "the size that loaded was asked again and failed");
    assert.ok(loads.length <= 20, `${loads.length} loads`);
    assert.equal(run.code, 0, run.stderr);
    const [r] = (JSON.parse(run.stdout) as { results: Result[] }).results;
    assert.equal(r?.status, "tested", r?.error ?? "");
    assert.ok(
      r.loadableContext! <= 8000 && r.loadableContext! >= 8000 - 256,
      `${r.loadableContext}`,
    );
    assert.ok(r.workingContext! <= r.loadableContext!);
    assert.deepEqual(emulator.stats().loaded, [], "nothing left loaded");
  });
});

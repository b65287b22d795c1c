/**
 * The library surface of mod.ts against the LM Studio emulator: the same engine as the CLI, with
 * results as values and failures as typed exceptions, never an exit.
 */

import assert from "node:assert/strict";
import {
  LMStrix,
  LmStudioUnreachableError,
  LockHeldError,
  ModelNotFoundError,
  RegistryError,
  UsageError,
} from "../mod.ts";
import { type ModelProfile, profileTruth } from "../scripts/emulator/profile.ts";
import { closedPort, tempHome } from "./support/cli.ts";
import { RECORD_KEYS } from "./support/contract.ts";
import { withEmulator } from "./support/emulator.ts";
import { acquireLock } from "../src/registry/lock.ts";
import { lmstrixPaths } from "../src/paths.ts";

const base = {
  format: "gguf",
  architecture: "llama",
  paramsString: "1B",
  quantization: "Q4_K_M",
  sizeBytes: 800_000_000,
} as const;

/** Small models with irregular limits, so the library test runs in a second or two. */
const PROFILES: ModelProfile[] = [
  {
    ...base,
    modelKey: "tiny-honest-8k",
    displayName: "Tiny Honest 8k",
    path: "test/tiny-honest-8k.gguf",
    type: "llm",
    declaredContext: 8192,
  },
  {
    ...base,
    modelKey: "tiny-cliff-16k",
    displayName: "Tiny Cliff 16k",
    path: "test/tiny-cliff-16k.gguf",
    type: "llm",
    declaredContext: 16384,
    loadFailAbove: 13_100,
    needleFailAbove: 9_300,
    needleFailMode: "wrong-number",
  },
  {
    ...base,
    modelKey: "tiny-unloadable",
    displayName: "Tiny Unloadable",
    path: "test/tiny-unloadable.gguf",
    type: "llm",
    declaredContext: 4096,
    loadFailAbove: 1_000,
  },
  {
    ...base,
    modelKey: "tiny-embed",
    displayName: "Tiny Embed",
    path: "test/tiny-embed.gguf",
    type: "embedding",
    declaredContext: 2048,
    sizeBytes: 90_000_000,
  },
];

const sdkTest = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "the library scans, tests and reads back limits through the emulator",
  ...sdkTest,
  async fn(t) {
    await using home = await tempHome();
    await withEmulator(PROFILES, async (emulator) => {
      const lmstrix = new LMStrix({ server: emulator.url, lmstudioDir: home.path });

      await t.step("scan returns the contract's records", async () => {
        const result = await lmstrix.scan();
        assert.deepEqual(
          result.models.map((m) => m.id).sort(),
          PROFILES.map((p) => p.modelKey).sort(),
        );
        const cliff = result.models.find((m) => m.id === "tiny-cliff-16k");
        assert.deepEqual(Object.keys(cliff ?? {}), RECORD_KEYS);
        assert.equal(cliff?.declaredContext, 16384);
        assert.equal(cliff?.status, "untested");
      });

      await t.step("an untested model has no tested limit yet", async () => {
        assert.equal(await lmstrix.getTestedContextLimit("tiny-cliff-16k"), null);
      });

      await t.step(
        "testContextLimits finds both limits within the precision, never above",
        async () => {
          const limits = await lmstrix.testContextLimits("cliff", { precision: 256 });
          const truth = profileTruth(PROFILES[1]!);
          assert.equal(limits.id, "tiny-cliff-16k");
          assert.equal(limits.declared, 16384);
          assert.ok(
            limits.loadable !== null && limits.loadable <= truth.loadable,
            `loadable ${limits.loadable}`,
          );
          assert.ok(limits.loadable >= truth.loadable - 256, `loadable ${limits.loadable}`);
          assert.ok(
            limits.working !== null && limits.working <= truth.working + 64,
            `working ${limits.working}`,
          );
          assert.ok(limits.working >= truth.working - 256, `working ${limits.working}`);
          assert.equal(
            limits.reductionPercent,
            Math.round((1 - limits.working / 16384) * 1000) / 10,
          );
          assert.equal(emulator.stats().loaded.length, 0, "nothing may stay loaded");
        },
      );

      await t.step("getTestedContextLimit and list read the stored result", async () => {
        const working = await lmstrix.getTestedContextLimit("tiny-cliff-16k");
        const record = (await lmstrix.list()).find((m) => m.id === "tiny-cliff-16k");
        assert.equal(record?.status, "tested");
        assert.equal(working, record?.workingContext);
        assert.ok(typeof record?.testedAt === "string");
      });

      await t.step("an honest model costs one load", async () => {
        const before = emulator.stats().loads.length;
        const limits = await lmstrix.testContextLimits("tiny-honest-8k");
        assert.equal(limits.loadable, 8192);
        assert.equal(limits.working, 8192);
        assert.equal(emulator.stats().loads.length - before, 1);
        // The attempts of this run come back with it: one load, its health check, the needles.
        assert.deepEqual(limits.attempts.map((a) => a.action).slice(0, 2), ["load", "sanity"]);
        assert.ok(limits.attempts.slice(2).every((a) => a.action === "needle"));
        assert.ok(limits.attempts.every((a) => a.model === "tiny-honest-8k"));
      });

      await t.step("a tested model keeps its numbers unless force is set", async () => {
        const before = emulator.stats().loads.length;
        const limits = await lmstrix.testContextLimits("tiny-honest-8k", { maxContext: 4096 });
        assert.equal(limits.loadable, 8192);
        assert.deepEqual(limits.attempts, []);
        assert.equal(emulator.stats().loads.length, before);
      });

      await t.step(
        "a limit equal to --max-context is recorded as capped, and cleared when not",
        async () => {
          await lmstrix.testContextLimits("tiny-honest-8k", { maxContext: 4096, force: true });
          const capped = await lmstrix.show("tiny-honest-8k");
          assert.equal(capped.loadableContext, 4096);
          assert.equal(capped.cappedAt, 4096);
          await lmstrix.testContextLimits("tiny-honest-8k", { force: true });
          const full = await lmstrix.show("tiny-honest-8k");
          assert.equal(full.loadableContext, 8192);
          assert.equal(full.cappedAt, undefined);
        },
      );

      await t.step("a model that loads at no size comes back failed with the reason", async () => {
        const limits = await lmstrix.testContextLimits("tiny-unloadable");
        assert.equal(limits.status, "failed");
        assert.equal(limits.loadable, null);
        assert.equal(limits.working, null);
        assert.match(limits.error ?? "", /did not load at 2048 tokens or more/);
        const record = (await lmstrix.list()).find((m) => m.id === "tiny-unloadable");
        assert.equal(record?.status, "failed");
        assert.equal(record?.error, limits.error);
      });

      await t.step("unknown and embedding models are refused with typed errors", async () => {
        await assert.rejects(lmstrix.testContextLimits("no-such-model"), ModelNotFoundError);
        await assert.rejects(lmstrix.testContextLimits("tiny-embed"), UsageError);
        // "tiny" matches several models: the error names them.
        await assert.rejects(lmstrix.getTestedContextLimit("tiny"), (error: unknown) => {
          assert.ok(error instanceof ModelNotFoundError);
          assert.match(error.message, /tiny-honest-8k/);
          return true;
        });
      });

      await t.step("a held lock is a LockHeldError naming the holder", async () => {
        const lock = await acquireLock(lmstrixPaths(home.path), { pid: 424242 });
        try {
          await assert.rejects(lmstrix.scan(), (error: unknown) => {
            assert.ok(error instanceof LockHeldError);
            assert.equal(error.pid, 424242);
            return true;
          });
          // Readers still work while the lock is held.
          assert.equal((await lmstrix.status()).lock?.pid, 424242);
        } finally {
          await lock.release();
        }
      });
    });
  },
});

Deno.test("scan never takes the emulator for LM Studio unless it is named, and nothing is written", async () => {
  await using home = await tempHome();
  await withEmulator(PROFILES, async (emulator) => {
    const found = new LMStrix({ discoveryPorts: [emulator.port], lmstudioDir: home.path });
    await assert.rejects(found.scan(), (error: unknown) => {
      assert.ok(error instanceof LmStudioUnreachableError);
      assert.match(error.message, /only LMStrix's emulator answered/);
      assert.match(error.message, new RegExp(emulator.httpUrl));
      return true;
    });
    const registry = lmstrixPaths(home.path).registry;
    await assert.rejects(Deno.stat(registry), Deno.errors.NotFound);
    const named = new LMStrix({ server: emulator.url, lmstudioDir: home.path });
    assert.equal((await named.scan()).models.length, PROFILES.length);
  });
});

Deno.test("the library reports an unreachable LM Studio and a damaged registry as typed errors", async () => {
  await using home = await tempHome();
  const lmstrix = new LMStrix({ server: `ws://127.0.0.1:${closedPort()}`, lmstudioDir: home.path });
  await assert.rejects(lmstrix.scan(), LmStudioUnreachableError);

  const registry = lmstrixPaths(home.path).registry;
  await Deno.mkdir(lmstrixPaths(home.path).root, { recursive: true });
  await Deno.writeTextFile(registry, "{ not json");
  await assert.rejects(lmstrix.list(), (error: unknown) => {
    assert.ok(error instanceof RegistryError);
    assert.equal(error.path, registry);
    return true;
  });
  assert.equal(await Deno.readTextFile(registry), "{ not json");
});

Deno.test("the library checks its permissions before it touches a file or the network", async (t) => {
  await using home = await tempHome();
  const script = new URL("./support/library_permissions.ts", import.meta.url).pathname;
  const run = async (flags: string[], method: string) => {
    const output = await new Deno.Command("deno", {
      args: ["run", ...flags, script, method, home.path, "ws://127.0.0.1:1"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    return JSON.parse(text) as { ok?: unknown; error?: { class: string; message: string } };
  };
  const cases: [string, string[], string, RegExp][] = [
    ["no permissions at all", [], "list", /permission to read environment variables/],
    ["no read access to the home", ["--allow-env", "--allow-read=/nowhere"], "list", /read "/],
    [
      "scan without write and net",
      ["--allow-env", "--allow-read"],
      "scan",
      /permission to write ".*", connect to LM Studio at 127\.0\.0\.1/,
    ],
    ["scan without net", ["--allow-env", "--allow-read", "--allow-write"], "scan", /connect/],
  ];
  for (const [what, flags, method, message] of cases) {
    await t.step(what, async () => {
      const result = await run(flags, method);
      assert.equal(result.error?.class, "UsageError", JSON.stringify(result));
      assert.match(result.error!.message, message);
      assert.deepEqual([...Deno.readDirSync(home.path)], [], "nothing was written");
    });
  }
  await t.step("list needs only --allow-read and --allow-env", async () => {
    assert.deepEqual(await run(["--allow-env", "--allow-read"], "list"), { ok: [] });
  });
});

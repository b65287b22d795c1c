/**
 * What a run that died leaves behind, and what the next run makes of it: instances left loaded
 * (unloaded when a dead run of this home left them, left alone when another home's or the
 * user's), and the crash marker of a load the run died in (loaded again when the evidence says
 * the machine survived it, counted as not loadable after a restart or a second death there).
 *
 * @module
 */

import assert from "node:assert/strict";
import { LMStrix } from "../src/lmstrix.ts";
import { fnv1a32 } from "../src/ids.ts";
import { lmstrixPaths } from "../src/paths.ts";
import { tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import {
  assertSameNumbers,
  cleanRun,
  fleet,
  lmstrix,
  readLog,
  readRegistry,
  spawnCli,
  waitFor,
} from "./support/reliability.ts";
import type { Emulator } from "../scripts/emulator/server.ts";

/** The instance prefix of runs of the LM Studio home `home`. */
function homePrefix(home: string): string {
  return `lmstrix-${fnv1a32(lmstrixPaths(home).registry).toString(36)}-`;
}

/** Runs `test beta` and SIGKILLs it in its hung load of beta; returns the size it was loading. */
async function killInHungLoad(emulator: Emulator, home: string, hung: number): Promise<number> {
  const run = spawnCli(emulator, home, ["test", "beta"]);
  await waitFor(
    `hung load ${hung}`,
    () =>
      emulator.stats().loads.filter((l) => l.modelKey === "beta" && l.error === "fault: hang")
        .length >= hung,
  );
  const pending = emulator.stats().loads.findLast((l) => l.modelKey === "beta")!.askedContext!;
  run.child.kill("SIGKILL");
  await run.done;
  assert.equal((await readRegistry(home)).beta?.search?.pendingLoad, pending);
  return pending;
}

Deno.test("leftovers of a killed run are unloaded; other runs' and the user's are left alone", async () => {
  await using home = await tempHome();
  const profiles = fleet({ alpha: { faults: { hangOnPredict: [2] } } });
  await withEmulator(profiles, async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const mine = emulator.loadByHand("beta", "my-beta", 4096);
    const otherHome = emulator.loadByHand("beta", "lmstrix-0other0-run1-1", 4096);

    // SIGKILL during a prediction: its instance stays loaded in LM Studio.
    const first = spawnCli(emulator, home.path, ["test", "alpha"]);
    await waitFor(
      "the hung prediction",
      () => emulator.stats().predictions.some((p) => p.error === "fault: hang"),
    );
    first.child.kill("SIGKILL");
    await first.done;
    const stale = emulator.stats().loaded.filter((l) =>
      l.identifier.startsWith(homePrefix(home.path))
    );
    assert.equal(stale.length, 1, "the killed run left its instance");

    const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stderr, new RegExp(`Unloaded "${stale[0]!.identifier}" \\(alpha\\)`));
    assert.match(rerun.stderr, /"beta" is loaded \(not by LMStrix\) and takes memory/);
    assert.match(
      rerun.stderr,
      /"beta" is loaded by another LMStrix run \("lmstrix-0other0-run1-1"\), left alone/,
    );
    assert.match(rerun.stderr, /alpha \(resuming\)/);
    assert.deepEqual(emulator.stats().loaded, [mine, otherHome], "only the others are loaded");
  });
});

Deno.test("a death during a load: the size is loaded again unless the evidence says it crashed", async (t) => {
  const clean = await cleanRun();

  await t.step("the machine did not restart: the rerun loads it again, numbers exact", async () => {
    await using home = await tempHome();
    await withEmulator(fleet({ beta: { faults: { hangOnLoad: [2] } } }), async (emulator) => {
      assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
      const pending = await killInHungLoad(emulator, home.path, 1);
      const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
      assert.equal(rerun.code, 0, rerun.stderr);
      assert.match(
        rerun.stderr,
        new RegExp(
          `stopped while loading "beta" at ${pending} tokens; the machine did not ` +
            "restart since, so it is loaded again",
        ),
      );
      const log = await readLog(home.path, "beta");
      assert.deepEqual(log.filter((e) => e.outcome === "crashed"), []);
      assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha", "beta"]);
    });
  });

  await t.step("a second death at the same size counts as crashed", async () => {
    await using home = await tempHome();
    await withEmulator(fleet({ beta: { faults: { hangOnLoad: [2, 3] } } }), async (emulator) => {
      assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
      const pending = await killInHungLoad(emulator, home.path, 1);
      assert.equal(await killInHungLoad(emulator, home.path, 2), pending, "the same load again");
      const rerun = await lmstrix(emulator, home.path, ["test", "beta"]);
      assert.equal(rerun.code, 0, rerun.stderr);
      assert.match(
        rerun.stderr,
        new RegExp(
          `"beta" at ${pending} tokens \\(a run died loading it at that size twice\\); ` +
            "that size now counts as failed",
        ),
      );
      const crashed = (await readLog(home.path, "beta")).filter((e) => e.outcome === "crashed");
      assert.deepEqual(crashed.map((e) => e.askedContext), [pending]);
      const beta = (await readRegistry(home.path)).beta!;
      assert.equal(beta.status, "tested");
      assert.ok(beta.workingContext! < pending, "the crashed size is not reported");
    });
  });

  await t.step("its instance found loaded at that size proves the load: loaded again", async () => {
    await using home = await tempHome();
    await withEmulator(fleet({ beta: { faults: { hangOnLoad: [2, 3] } } }), async (emulator) => {
      assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
      const pending = await killInHungLoad(emulator, home.path, 1);
      await killInHungLoad(emulator, home.path, 2);
      // The load the run died in did finish in LM Studio: its instance is there at that size.
      emulator.loadByHand("beta", `${homePrefix(home.path)}dead-1`, pending);
      const rerun = await lmstrix(emulator, home.path, ["test", "--all"]);
      assert.equal(rerun.code, 0, rerun.stderr);
      assert.match(
        rerun.stderr,
        /its instance was found loaded at that size, so it is loaded again/,
      );
      assertSameNumbers(await readRegistry(home.path), clean.models, ["alpha", "beta"]);
      assert.deepEqual(emulator.stats().loaded, []);
    });
  });

  await t.step("the machine restarted since the marker: the size counts as crashed", async () => {
    await using home = await tempHome();
    await withEmulator(fleet({ beta: { faults: { hangOnLoad: [2] } } }), async (emulator) => {
      assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
      const pending = await killInHungLoad(emulator, home.path, 1);
      const restarted = new LMStrix({
        server: emulator.url,
        lmstudioDir: home.path,
        // A new boot: another boot id where there is one, an uptime back near zero.
        bootTime: () => ({ bootId: "another boot", uptimeMs: 1_000, bootTimeMs: Date.now() }),
      });
      const events: string[] = [];
      const limits = await restarted.testContextLimits("beta", {
        onEvent: (e) => e.type === "warning" && events.push(e.message),
      });
      assert.equal(limits.status, "tested");
      assert.ok(
        events.some((m) => m.includes(`at ${pending} tokens (the machine restarted since)`)),
        events.join("\n"),
      );
      const crashed = limits.attempts.filter((a) => a.outcome === "crashed");
      assert.deepEqual(crashed.map((a) => a.askedContext), [pending]);
    });
  });
});

Deno.test("a needle cut short resumes with the haystack it was using (a noisy model's numbers stay)", async () => {
  // Mistral's noisy cliff: which needles pass near the limit depends on the haystack's seed.
  const noisy = (extra: Partial<ModelProfile> = {}) => [
    testProfile("noisy", {
      declaredContext: 32768,
      needleFailAbove: 13000,
      needleFailMode: "wrong-number",
      noisyBand: 2048,
      ...extra,
    }),
  ];
  await using cleanHome = await tempHome();
  const clean = await withEmulator(noisy(), async (emulator) => {
    assert.equal((await lmstrix(emulator, cleanHome.path, ["scan", "-q"])).code, 0);
    assert.equal((await lmstrix(emulator, cleanHome.path, ["test", "noisy"])).code, 0);
    return (await readRegistry(cleanHome.path)).noisy!;
  });
  await using home = await tempHome();
  await withEmulator(noisy({ realDelayMs: { predict: 150 } }), async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const run = spawnCli(emulator, home.path, ["test", "noisy"]);
    // The confirmation: a second load, then its needle with a fresh haystack, cut short.
    await waitFor("the confirmation's needle in flight", () => {
      const s = emulator.stats();
      return s.loads.filter((l) => l.ok).length >= 2 && s.predictions.at(-1)?.stopReason === null &&
        s.predictions.at(-1)?.error === null;
    });
    run.child.kill("SIGINT");
    assert.equal((await run.done).code, 130);
    const rerun = await lmstrix(emulator, home.path, ["test", "noisy"]);
    assert.equal(rerun.code, 0, rerun.stderr);
    const noisyRecord = (await readRegistry(home.path)).noisy!;
    assert.equal(noisyRecord.workingContext, clean.workingContext);
    assert.equal(noisyRecord.loadableContext, clean.loadableContext);
  });
});

/**
 * `apply` and `apply --undo` against a hostile home: ids that once shared a file name, backups
 * and manifests edited by hand, symbolic links under `lmstrix/` and LM Studio's config folder, a
 * save by LM Studio at the last moment, configs the tool cannot handle. Each case checks what
 * reaches the disk, byte for byte, not only what is reported.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { applyContextLimits } from "../src/apply/apply.ts";
import type { ApplyEntry } from "../src/apply/step.ts";
import { applyPaths, loadApplied } from "../src/apply/applied_store.ts";
import { legacyFileSafeModelId, type LmstrixPaths, lmstrixPaths } from "../src/paths.ts";
import { buildApplyHome, configFile } from "./support/apply_home.ts";
import { tempHome } from "./support/cli.ts";

/** A config with the user's own settings, which only an edit in place keeps. */
const CONFIG = (kv: string, ctx: number) =>
  `{"preset":"","operation":{"fields":[]},"load":{"fields":[` +
  `{"key":"llm.load.llama.kCacheQuantizationType","value":{"checked":true,"value":"${kv}"}},` +
  `{"key":"llm.load.contextLength","value":${ctx}}]}}\n`;

interface Model {
  id: string;
  path: string;
  working?: number;
  config?: string;
}

/** Builds `models` in `home`, each tested with its working size (8,000 unless given). */
function buildHome(home: string, models: Model[]): Promise<void> {
  return buildApplyHome(
    home,
    models.map((model) => ({ ...model, status: "tested", working: model.working ?? 8_000 })),
  );
}

/** One model, with a config of the user's own settings. */
const ONE_MODEL = { id: "m", path: "pub/M/m.gguf", config: CONFIG("q8_0", 65_536) } as const;

/** Builds a home of {@link ONE_MODEL} in `home`; its paths. */
async function oneModelHome(home: string): Promise<LmstrixPaths> {
  await buildHome(home, [ONE_MODEL]);
  return lmstrixPaths(home);
}

function byId(entries: ApplyEntry[]): Map<string, ApplyEntry> {
  return new Map(entries.map((e) => [e.id, e]));
}

/** Whether `path` is a symbolic link (false when nothing is there). */
function isLink(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSymlink;
  } catch {
    return false;
  }
}

Deno.test("two models whose ids once shared a file name keep one backup each, and undo restores each", async () => {
  await using home = await tempHome();
  // `a/b` used to become exactly the second model's id.
  const twin = legacyFileSafeModelId("a/b");
  assert.notEqual(twin, "a/b");
  const models: Model[] = [
    { id: "a/b", path: "pub/A-GGUF/a.gguf", config: CONFIG("q8_0", 65_536) },
    { id: twin, path: "pub/B-GGUF/b.gguf", config: CONFIG("f16", 32_768) },
  ];
  await buildHome(home.path, models);
  const paths = lmstrixPaths(home.path);
  const applied = await applyContextLimits(paths, "all");
  assert.deepEqual(applied.map((e) => e.action), ["set", "set"]);
  const manifest = loadApplied(applyPaths(paths));
  const backups = Object.values(manifest.entries).map((e) => e.backup);
  assert.equal(new Set(backups).size, 2, `one backup per model: ${backups}`);

  const undone = await applyContextLimits(paths, "all", { undo: true });
  assert.deepEqual(undone.map((e) => e.action), ["restored", "restored"]);
  for (const model of models) {
    assert.equal(await Deno.readTextFile(configFile(home.path, model.path)), model.config);
  }
});

Deno.test("undo writes nothing from a backup whose bytes are not the recorded original", async () => {
  await using home = await tempHome();
  const model = ONE_MODEL;
  const paths = await oneModelHome(home.path);
  await applyContextLimits(paths, "all");
  const where = applyPaths(paths);
  const backup = join(where.backupsDir, loadApplied(where).entries["m"]!.backup!);
  // As an older version did when two models shared the name: another model's original.
  await Deno.writeTextFile(backup, CONFIG("f16", 32_768));
  const file = configFile(home.path, model.path);
  const written = await Deno.readTextFile(file);

  const [entry] = await applyContextLimits(paths, "all", { undo: true });
  assert.equal(entry!.action, "skipped");
  assert.equal(entry!.failed, true);
  assert.match(entry!.reason!, /backup .*not what was there before/);
  assert.equal(await Deno.readTextFile(file), written, "the file is left as apply wrote it");
  assert.equal(await Deno.readTextFile(backup), CONFIG("f16", 32_768), "the backup is kept");
  assert.ok(loadApplied(where).entries["m"] !== undefined, "undo still knows the model");
});

Deno.test("a save LM Studio makes just before the rename is kept, and the model is named", async () => {
  await using home = await tempHome();
  const model = ONE_MODEL;
  const paths = await oneModelHome(home.path);
  const file = configFile(home.path, model.path);
  const saved = model.config.replace(
    "]}}",
    ',{"key":"llm.load.llama.flashAttention","value":true}]}}',
  );
  const warnings: string[] = [];
  const [entry] = await applyContextLimits(paths, "all", {
    // After the backup and the manifest are written, the moment before the rename.
    beforeReplace: (path) => Deno.writeTextFileSync(path, saved),
    onWarning: (message) => warnings.push(message),
  });
  assert.equal(entry!.action, "skipped");
  assert.equal(entry!.failed, true);
  assert.match(entry!.reason!, /changed while lmstrix was working on it/);
  assert.equal(await Deno.readTextFile(file), saved, "LM Studio's save survives");
  assert.equal(warnings.length, 1);
  // Undo has nothing to take back and changes nothing.
  await applyContextLimits(paths, "all", { undo: true });
  assert.equal(await Deno.readTextFile(file), saved);
});

Deno.test("a hand-edited applied.json cannot make undo read, copy or delete a file elsewhere", async () => {
  await using home = await tempHome();
  const model = ONE_MODEL;
  const paths = await oneModelHome(home.path);
  await applyContextLimits(paths, "all");
  const outside = await Deno.makeTempDir({ prefix: "lmstrix-outside-" });
  try {
    const victim = join(outside, "victim.txt");
    await Deno.writeTextFile(victim, "the user's own file\n");
    const where = applyPaths(paths);
    const data = JSON.parse(await Deno.readTextFile(where.manifest));
    const back = "../".repeat(12) + victim.slice(1);
    data.entries["m"].backup = back;
    data.createdDirs = [back];
    await Deno.writeTextFile(where.manifest, JSON.stringify(data));
    const file = configFile(home.path, model.path);
    const written = await Deno.readTextFile(file);

    const [entry] = await applyContextLimits(paths, "all", { undo: true });
    assert.equal(entry!.action, "skipped");
    assert.equal(entry!.failed, true);
    assert.match(entry!.reason!, /backup name .* is not a file in config_backups/);
    assert.equal(await Deno.readTextFile(victim), "the user's own file\n", "not deleted");
    assert.equal(await Deno.readTextFile(file), written, "nothing copied in");
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("symbolic links under lmstrix/ and LM Studio's config folder are never written through", async (t) => {
  const outsideDir = await Deno.makeTempDir({ prefix: "lmstrix-outside-" });
  const victimText = "outside the home\n";
  const reset = async () => {
    await Deno.remove(outsideDir, { recursive: true }).catch(() => {});
    await Deno.mkdir(outsideDir);
  };
  try {
    await t.step("a linked config_backups: nothing written there, nothing deleted", async () => {
      await reset();
      await using home = await tempHome();
      const model = ONE_MODEL;
      const paths = await oneModelHome(home.path);
      await Deno.writeTextFile(join(outsideDir, "m.json"), victimText);
      await Deno.symlink(outsideDir, applyPaths(paths).backupsDir);
      const [entry] = await applyContextLimits(paths, "all");
      assert.equal(entry!.action, "skipped");
      assert.equal(entry!.failed, true);
      assert.match(entry!.reason!, /symbolic link/);
      assert.equal(await Deno.readTextFile(join(outsideDir, "m.json")), victimText);
      assert.deepEqual([...Deno.readDirSync(outsideDir)].map((e) => e.name), ["m.json"]);
      assert.equal(await Deno.readTextFile(configFile(home.path, model.path)), model.config);
    });

    await t.step("a linked backups folder at undo: the backup is not read through it", async () => {
      await reset();
      await using home = await tempHome();
      const paths = await oneModelHome(home.path);
      await applyContextLimits(paths, "all");
      const where = applyPaths(paths);
      const name = loadApplied(where).entries["m"]!.backup!;
      await Deno.writeTextFile(join(outsideDir, name), victimText);
      await Deno.remove(where.backupsDir, { recursive: true });
      await Deno.symlink(outsideDir, where.backupsDir);
      const [entry] = await applyContextLimits(paths, "all", { undo: true });
      assert.equal(entry!.action, "skipped");
      assert.match(entry!.reason!, /symbolic link/);
      assert.equal(await Deno.readTextFile(join(outsideDir, name)), victimText, "not deleted");
    });

    await t.step(
      "a linked folder under LM Studio's config folder: the model is skipped",
      async () => {
        await reset();
        await using home = await tempHome();
        const model = { id: "m", path: "pub/M/m.gguf" };
        await buildHome(home.path, [model, { id: "n", path: "other/N/n.gguf" }]);
        const pub = join(home.path, ".internal", "user-concrete-model-default-config", "pub");
        await Deno.mkdir(dirname(pub), { recursive: true });
        await Deno.symlink(outsideDir, pub);
        const entries = byId(await applyContextLimits(lmstrixPaths(home.path), "all"));
        assert.equal(entries.get("m")!.action, "skipped");
        assert.match(entries.get("m")!.reason!, /symbolic link/);
        assert.equal(entries.get("n")!.action, "set", "the others go on");
        assert.deepEqual([...Deno.readDirSync(outsideDir)], []);
      },
    );

    await t.step("a linked config file is skipped and stays a link", async () => {
      await reset();
      await using home = await tempHome();
      const model = { id: "m", path: "pub/M/m.gguf" };
      await buildHome(home.path, [model]);
      const target = join(outsideDir, "real.json");
      await Deno.writeTextFile(target, CONFIG("q8_0", 65_536));
      const file = configFile(home.path, model.path);
      await Deno.mkdir(dirname(file), { recursive: true });
      await Deno.symlink(target, file);
      const [entry] = await applyContextLimits(lmstrixPaths(home.path), "all");
      assert.equal(entry!.action, "skipped");
      assert.equal(entry!.failed, true);
      assert.match(entry!.reason!, /symbolic link/);
      assert.ok(isLink(file));
      assert.equal(await Deno.readTextFile(target), CONFIG("q8_0", 65_536));
    });
  } finally {
    await Deno.remove(outsideDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a read-only config file is skipped and named, not replaced", async () => {
  await using home = await tempHome();
  const model = ONE_MODEL;
  const paths = await oneModelHome(home.path);
  const file = configFile(home.path, model.path);
  await Deno.chmod(file, 0o444);
  const [entry] = await applyContextLimits(paths, "all");
  assert.equal(entry!.action, "skipped");
  assert.equal(entry!.failed, true);
  assert.match(entry!.reason!, /read-only/);
  assert.equal(await Deno.readTextFile(file), model.config);
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o444);
});

Deno.test("a config nested too deeply is skipped and named; the other models are applied", async () => {
  await using home = await tempHome();
  const deep = `{"load":{"fields":[]},"x":${"[".repeat(5_000)}${"]".repeat(5_000)}}`;
  const models: Model[] = [
    { id: "deep", path: "pub/Deep/d.gguf", config: deep },
    { id: "fine", path: "pub/Fine/f.gguf", config: CONFIG("q8_0", 65_536) },
  ];
  await buildHome(home.path, models);
  const entries = byId(await applyContextLimits(lmstrixPaths(home.path), "all"));
  assert.equal(entries.get("deep")!.action, "skipped");
  assert.equal(entries.get("deep")!.failed, true);
  assert.match(entries.get("deep")!.reason!, /nested too deeply/);
  assert.equal(entries.get("fine")!.action, "set");
  assert.equal(await Deno.readTextFile(configFile(home.path, "pub/Deep/d.gguf")), deep);
});

Deno.test("a config that is not JSON is reported without quoting its content", async () => {
  await using home = await tempHome();
  const secret = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG\n";
  await buildHome(home.path, [{ id: "m", path: "pub/M/m.gguf", config: secret }]);
  const [entry] = await applyContextLimits(lmstrixPaths(home.path), "all");
  assert.equal(entry!.action, "skipped");
  assert.match(entry!.reason!, /not valid JSON/);
  assert.doesNotMatch(entry!.reason!, /aws|secret|wJal/);
});

Deno.test("a config path too long for the file system says so, not that the file changed", async () => {
  await using home = await tempHome();
  const models: Model[] = [250, 300].map((n) => ({
    id: `long-${n}`,
    path: `pub/${"x".repeat(n)}`,
  }));
  await buildHome(home.path, models);
  const entries = byId(await applyContextLimits(lmstrixPaths(home.path), "all"));
  // 250 + ".json" is within the usual 255 bytes: the temp file beside it must be too.
  assert.equal(entries.get("long-250")!.action, "set", entries.get("long-250")!.reason ?? "");
  const entry = entries.get("long-300")!;
  assert.equal(entry.failed, true);
  assert.match(entry.reason!, /too long/);
  assert.doesNotMatch(entry.reason!, /changed while|run again/);
});

Deno.test("a temp file a killed run left beside a config is removed by the next apply and undo", async () => {
  await using home = await tempHome();
  const model = ONE_MODEL;
  const paths = await oneModelHome(home.path);
  const dir = dirname(configFile(home.path, model.path));
  for (const command of ["apply", "undo"] as const) {
    const stale = join(dir, ".lmstrix-4242-0a1b2c3d.tmp");
    await Deno.writeTextFile(stale, "half a config");
    await Deno.writeTextFile(join(dir, "notes.tmp"), "the user's");
    await applyContextLimits(paths, "all", { undo: command === "undo" });
    assert.equal(isLink(stale) || (await Deno.stat(stale).catch(() => null)) !== null, false);
    assert.equal(await Deno.readTextFile(join(dir, "notes.tmp")), "the user's", command);
  }
  await Deno.remove(join(dir, "notes.tmp"));
  assert.equal(await Deno.readTextFile(configFile(home.path, model.path)), model.config);
});

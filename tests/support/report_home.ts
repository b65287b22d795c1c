/**
 * LM Studio homes for the report's tests: the demo fleet tested for real (scan, `test --all` and
 * one one-size check, through the CLI against the emulator), with one more model whose key and
 * name are markup, as a hostile or careless server could send them; and a shelf of fifty models
 * made from the longest real attempt log, for the size bound.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ModelProfile } from "../../scripts/emulator/profile.ts";
import { lmstrixPaths } from "../../src/paths.ts";
import { logFileFor } from "../../src/paths.ts";
import { loadRegistry, saveRegistry } from "../../src/registry/registry.ts";
import { runCliAgainst, tempHome } from "./cli.ts";
import { loadFleet, testProfile, withEmulator } from "./emulator.ts";

/** A model key that is markup: the report must show it as text. */
export const HOSTILE_KEY = `evil/<img src="http://127.0.0.1:9/x.png" onerror="alert(1)">&'`;

/** The model the home's one-size check ran on, and its size. */
export const CHECKED = { id: "qwen3-8b", context: 20480 } as const;

/** A tested home: its path and the ids of its models. */
export interface TestedHome extends AsyncDisposable {
  path: string;
  ids: string[];
}

/** The demo fleet plus {@link HOSTILE_KEY}, scanned and tested, with one check; disposable. */
export async function testedDemoHome(): Promise<TestedHome> {
  const home = await tempHome();
  const profiles: ModelProfile[] = [
    ...await loadFleet(),
    testProfile(HOSTILE_KEY, {
      displayName: "<script>alert('name')</script>",
      declaredContext: 8192,
      needleFailAbove: 5000,
      needleFailMode: "wrong-number",
    }),
  ];
  await withEmulator(profiles, async (emulator) => {
    const env = { LMSTRIX_BACKOFF_MS: "20" };
    for (
      const args of [["scan"], ["test", "--all"], ["test", CHECKED.id, "--ctx", "20k"]]
    ) {
      const run = await runCliAgainst(emulator.url, home.path, [...args, "-q"], env);
      // The fleet holds a model that loads at no size: test --all exits 1 for it.
      assert.ok(run.code === 0 || (args[1] === "--all" && run.code === 1), run.stderr);
    }
  });
  return {
    path: home.path,
    ids: profiles.map((p) => p.modelKey),
    [Symbol.asyncDispose]: () => home[Symbol.asyncDispose](),
  };
}

/**
 * A home of `count` tested models, each a copy of the record and attempt log of `from`'s model
 * with the longest log (the report's worst case, where every model was as hard to test).
 */
export async function shelfOf(from: string, count: number): Promise<TestedHome> {
  const source = lmstrixPaths(from);
  const registry = await loadRegistry(source);
  let longest = { id: "", text: "" };
  for (const id of Object.keys(registry.models)) {
    const text = await Deno.readTextFile(logFileFor(source, id)).catch(() => "");
    if (text.length > longest.text.length) longest = { id, text };
  }
  const home = await tempHome();
  const target = lmstrixPaths(home.path);
  const copy = await loadRegistry(source);
  copy.models = {};
  const ids: string[] = [];
  await Deno.mkdir(target.logsDir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const id = `${longest.id}-copy-${String(i).padStart(2, "0")}`;
    ids.push(id);
    copy.models[id] = { ...registry.models[longest.id]!, id };
    await Deno.writeTextFile(
      logFileFor(target, id),
      longest.text.replaceAll(`"model":${JSON.stringify(longest.id)}`, `"model":"${id}"`),
    );
  }
  await saveRegistry(target, copy);
  return { path: home.path, ids, [Symbol.asyncDispose]: () => home[Symbol.asyncDispose]() };
}

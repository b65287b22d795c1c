/**
 * The soak's apply/undo cycle: after a soak run's `test --all` has finished, its home gets LM
 * Studio config files for most models (with the user's other settings, or none at all) and the
 * id-collision shelf (a model `soak/collide` and one named exactly as older versions named the
 * first one's files); then `apply --all` runs and is killed (SIGKILL or SIGINT) at a random
 * moment or not, is perhaps rerun to the end, and `apply --undo --all` runs under random kills
 * until it finishes. The check: every LM Studio config is byte-identical to what it was before
 * the first apply, the folders apply made are gone, and the manifest is empty.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { legacyFileSafeModelId } from "../src/paths.ts";

/** The two ids of the collision shelf: older versions gave both one backup and one log. */
export const COLLISION_IDS: readonly string[] = [
  "soak/collide",
  legacyFileSafeModelId("soak/collide"),
];

/** Attempts an undo may take under kills before the cycle counts as stuck. */
const MAX_UNDO_ATTEMPTS = 12;

/** Starts the CLI with `args` in `home`; resolves with its exit code and stderr. */
export type Spawn = (args: string[]) => {
  child: Deno.ChildProcess;
  done: Promise<[Deno.CommandStatus, string]>;
};

/** What one cycle did and found. */
export interface ApplyCycleResult {
  /** CLI runs of apply and undo. */
  attempts: number;
  /** Kills that landed while the CLI ran, by signal. */
  kills: { SIGKILL: number; SIGINT: number };
  /** What was not as before, or an empty list. */
  problems: string[];
}

function configDir(home: string): string {
  return join(home, ".internal", "user-concrete-model-default-config");
}

/** A config with the user's other settings around the context length. */
function userConfig(i: number): string {
  return `{\n  "preset": "soak ${i}",\n  "operation": {"fields": []},\n  "load": {"fields": [\n` +
    `    {"key": "llm.load.llama.kCacheQuantizationType", "value": {"checked": true, "value": ` +
    `"q8_0"}},\n    {"key": "llm.load.contextLength", "value": ${4096 * (i + 1)}},\n` +
    `    {"key": "llm.load.llama.flashAttention", "value": ${i % 2 === 0}}\n  ]}\n}\n`;
}

/**
 * Gives `home` config files for most tested models (some have none: apply creates them) and adds
 * the collision shelf to its registry, each with a config of its own.
 */
export async function prepareApplyShelf(home: string, random: () => number): Promise<void> {
  const file = join(home, "lmstrix", "models.json");
  const data = JSON.parse(await Deno.readTextFile(file));
  const models = data.models as Record<string, Record<string, unknown>>;
  const tested = Object.values(models).find((r) => r["status"] === "tested");
  if (tested === undefined) throw new Error("the soak run tested no model");
  for (const [i, id] of COLLISION_IDS.entries()) {
    models[id] = { ...tested, id, path: `soak/${i === 0 ? "collide" : "twin"}/model-${i}.gguf` };
  }
  await Deno.writeTextFile(file, JSON.stringify(data, null, 2) + "\n");
  let i = 0;
  for (const record of Object.values(models)) {
    i++;
    if (record["status"] !== "tested") continue;
    const collides = COLLISION_IDS.includes(record["id"] as string);
    if (!collides && random() < 0.3) continue; // No file yet: apply creates it (and its folders).
    const path = join(configDir(home), ...(record["path"] as string).split("/")) + ".json";
    await Deno.mkdir(dirname(path), { recursive: true });
    await Deno.writeTextFile(path, userConfig(i));
  }
}

/** Every file and folder under `dir` with each file's bytes, for an exact comparison. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const walk = async (at: string, rel: string) => {
    for await (const entry of Deno.readDir(at)) {
      const name = `${rel}/${entry.name}`;
      if (entry.isDirectory) {
        found.set(name + "/", "dir");
        await walk(join(at, entry.name), name);
      } else found.set(name, await Deno.readTextFile(join(at, entry.name)));
    }
  };
  try {
    await walk(dir, "");
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return found;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs the CLI with `args`, killed at a random moment with probability `killChance`; returns its
 * exit code and which kill landed (null: it ended on its own first).
 */
async function maybeKilled(
  spawn: Spawn,
  args: string[],
  random: () => number,
  killChance: number,
): Promise<{ code: number; killed: "SIGKILL" | "SIGINT" | null; stderr: string }> {
  const { child, done } = spawn(args);
  let exited = false;
  const ended = done.finally(() => exited = true);
  let killed: "SIGKILL" | "SIGINT" | null = null;
  if (random() < killChance) {
    const signal = random() < 0.6 ? "SIGKILL" as const : "SIGINT" as const;
    // Deno starts in 100-300 ms here; the kill lands before, during or after the writes.
    await Promise.race([sleep(100 + random() * 500), ended]);
    if (!exited) {
      try {
        child.kill(signal);
        killed = signal;
      } catch {
        // It ended just now.
      }
    }
  }
  const [status, stderr] = await ended;
  return { code: status.code, killed: status.code === 0 ? null : killed, stderr };
}

/** One apply/undo cycle on a prepared home (see the module doc). */
export async function applyCycle(
  home: string,
  spawn: Spawn,
  random: () => number,
): Promise<ApplyCycleResult> {
  const result: ApplyCycleResult = { attempts: 0, kills: { SIGKILL: 0, SIGINT: 0 }, problems: [] };
  const before = await snapshot(join(home, ".internal"));
  const run = async (args: string[], killChance: number) => {
    result.attempts++;
    const outcome = await maybeKilled(spawn, args, random, killChance);
    if (outcome.killed !== null) result.kills[outcome.killed]++;
    const expected = outcome.killed === "SIGKILL"
      ? [137]
      : outcome.killed === "SIGINT"
      ? [130]
      : [0];
    if (!expected.includes(outcome.code)) {
      result.problems.push(
        `${args.join(" ")}: exit ${outcome.code}: ${outcome.stderr.trim().split("\n").at(-1)}`,
      );
    }
    return outcome.code;
  };
  await run(["apply", "--all", "-q"], 0.7);
  if (random() < 0.5) await run(["apply", "--all", "-q"], 0);
  let undone = false;
  for (let attempt = 0; attempt < MAX_UNDO_ATTEMPTS && !undone; attempt++) {
    undone = (await run(["apply", "--undo", "--all", "-q"], attempt < 3 ? 0.5 : 0)) === 0;
  }
  if (!undone) result.problems.push(`undo did not finish in ${MAX_UNDO_ATTEMPTS} attempts`);
  const after = await snapshot(join(home, ".internal"));
  for (const [name, content] of before) {
    if (after.get(name) !== content) result.problems.push(`${name} is not as it was`);
  }
  for (const name of after.keys()) {
    if (!before.has(name)) result.problems.push(`${name} was left behind`);
  }
  const manifest = JSON.parse(
    await Deno.readTextFile(join(home, "lmstrix", "applied.json")).catch(() => '{"entries":{}}'),
  );
  const left = Object.keys(manifest.entries ?? {});
  if (left.length > 0) result.problems.push(`the manifest still names ${left.join(", ")}`);
  return result;
}

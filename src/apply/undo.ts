/**
 * `apply --undo`: puts each config file LMStrix changed back as it was, byte for byte, but only
 * when the file still holds exactly what LMStrix wrote; a file someone changed since is left
 * alone with a warning. Once a file is back, its manifest entry and backup are dropped.
 *
 * @module
 */

import { join } from "node:path";
import { compareIds } from "../ids.ts";
import { writeFileAtomic } from "../registry/atomic_write.ts";
import { findModel, type Registry } from "../registry/registry.ts";
import {
  type AppliedEntry,
  type AppliedManifest,
  type ApplyPaths,
  saveApplied,
  sha256,
} from "./applied_store.ts";
import { configFileFor, decode, fileErrorText, pruneCreatedDirs } from "./config_files.ts";
import { parseConfig } from "./lmstudio_config.ts";
import { changedSincePlan, newStep, readStepFile, refuse, type Step, undone } from "./step.ts";

/** The steps that undo what LMStrix applied to the models `queries` names, or to all. */
export async function planUndo(
  where: ApplyPaths,
  registry: Registry,
  manifest: AppliedManifest,
  queries: readonly string[] | "all",
): Promise<Step[]> {
  const steps: Step[] = [];
  for (const id of undoIds(registry, manifest, queries)) {
    steps.push(await planUndoStep(where, registry, manifest.entries[id], id));
  }
  return steps;
}

/**
 * The ids to undo, each once: every applied one for "all"; else each query taken as an applied
 * id first (a model gone from the registry can still be undone), then looked up in the registry.
 */
function undoIds(
  registry: Registry,
  manifest: AppliedManifest,
  queries: readonly string[] | "all",
): string[] {
  if (queries === "all") return Object.keys(manifest.entries).sort(compareIds);
  const ids: string[] = [];
  for (const query of queries) {
    const id = manifest.entries[query] !== undefined ? query : findModel(registry, query).id;
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

async function planUndoStep(
  where: ApplyPaths,
  registry: Registry,
  applied: AppliedEntry | undefined,
  id: string,
): Promise<Step> {
  const record = registry.models[id] ?? null;
  if (applied === undefined) {
    const file = record === null ? null : configFileFor(where.configDir, record.path);
    const step = newStep(id, file, record);
    return refuse(step, { reason: "lmstrix has not applied anything to it", failed: false });
  }
  const step = newStep(id, configFileFor(where.configDir, applied.modelPath), record);
  const { entry } = step;
  if (entry.file === null) {
    const reason = `the recorded path "${applied.modelPath}" is not in LM Studio's config folder`;
    return refuse(step, { reason, failed: true });
  }
  if (!(await readStepFile(step, false))) return step;
  entry.previous = contextLengthIn(step.current);
  const original = await readBackup(where, applied);
  if ("problem" in original) return refuse(step, { reason: original.problem, failed: true });
  if (applied.existed) step.mode = applied.mode;
  const currentSha = step.current === null ? null : await sha256(step.current);
  if (currentSha === applied.originalSha256) {
    entry.action = "unchanged";
    entry.contextLength = entry.previous;
    entry.reason = "it is already as it was before apply";
    return step;
  }
  if (currentSha !== applied.writtenSha256) {
    entry.contextLength = entry.previous;
    const reason = step.current === null
      ? "it was removed since lmstrix applied it; left as it is"
      : "it changed since lmstrix applied it; left as it is";
    step.warning = `"${entry.file}" ${reason}`;
    return refuse(step, { reason, failed: true });
  }
  entry.action = "restored";
  entry.contextLength = contextLengthIn(original.bytes);
  step.next = original.bytes;
  return step;
}

/** The context length a config file's bytes set, or null (none, no file, not a config). */
function contextLengthIn(bytes: Uint8Array | null): number | null {
  const text = bytes === null ? null : decode(bytes);
  const parsed = text === null ? null : parseConfig(text);
  return parsed?.ok ? parsed.contextLength : null;
}

/** The file's bytes before the first apply (null: there was no file), or why they are lost. */
async function readBackup(
  where: ApplyPaths,
  applied: AppliedEntry,
): Promise<{ bytes: Uint8Array | null } | { problem: string }> {
  if (!applied.existed) return { bytes: null };
  try {
    return { bytes: await Deno.readFile(join(where.backupsDir, applied.backup!)) };
  } catch (error) {
    return { problem: `its backup cannot be read: ${fileErrorText(error)}` };
  }
}

/** Restores (or removes) the step's file, then forgets what was applied to it. */
export async function executeUndo(
  where: ApplyPaths,
  manifest: AppliedManifest,
  step: Step,
  onWarning: ((message: string) => void) | undefined,
): Promise<void> {
  const { entry } = step;
  const applied = manifest.entries[entry.id];
  if (applied === undefined || entry.file === null) return;
  if (step.warning !== undefined) {
    onWarning?.(step.warning);
    return;
  }
  if (entry.action === "unchanged") {
    await forget(where, manifest, entry.id, applied);
    return;
  }
  if (entry.action !== "restored") return;
  if (await changedSincePlan(step)) return;
  try {
    if (step.next === null) {
      await Deno.remove(entry.file);
    } else {
      await writeFileAtomic(entry.file, step.next, { mode: step.mode ?? undefined });
    }
  } catch (error) {
    undone(step, `cannot restore it: ${fileErrorText(error)}`);
    return;
  }
  await forget(where, manifest, entry.id, applied);
}

/** Drops a model's record and backup once its file is back as it was. */
async function forget(
  where: ApplyPaths,
  manifest: AppliedManifest,
  id: string,
  applied: AppliedEntry,
): Promise<void> {
  delete manifest.entries[id];
  await pruneCreatedDirs(where, manifest);
  await saveApplied(where, manifest);
  if (applied.backup !== null) {
    await Deno.remove(join(where.backupsDir, applied.backup)).catch(() => {});
  }
}

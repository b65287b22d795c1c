/**
 * `apply --undo`: puts each config file LMStrix changed back as it was, byte for byte, but only
 * when the file still holds exactly what LMStrix wrote and the backup is the original the manifest
 * recorded (its SHA-256); a file someone changed since is left alone with a warning. Once the
 * files are back, their manifest entries go in one write of the manifest for the whole run, then
 * their backups: a crash before that write leaves entries whose files are already as they were,
 * which the next undo sees and drops.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { compareIds } from "../ids.ts";
import { writeFileAtomic } from "../registry/atomic_write.ts";
import { findModel, type Registry } from "../registry/registry.ts";
import {
  type AppliedEntry,
  type AppliedManifest,
  type ApplyPaths,
  isPlainBackupName,
  saveApplied,
  sha256,
} from "./applied_store.ts";
import { linkBelow } from "../registry/no_follow.ts";
import { configFileFor, decode, fileErrorText, pruneCreatedDirs } from "./config_files.ts";
import { parseConfig } from "./lmstudio_config.ts";
import {
  ChangedSincePlan,
  changedSincePlan,
  newStep,
  readStepFile,
  refuse,
  type Step,
  stillAsPlanned,
  undone,
} from "./step.ts";

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
    const step = newStep(id, file, record, where.configDir);
    return refuse(step, { reason: "lmstrix has not applied anything to it", failed: false });
  }
  const step = newStep(
    id,
    configFileFor(where.configDir, applied.modelPath),
    record,
    where.configDir,
  );
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

/**
 * The file's bytes before the first apply (null: there was no file), or why they cannot be
 * trusted: a backup name that is not a plain name in `config_backups/`, a link on the way, a
 * backup that cannot be read, or one whose SHA-256 is not the original's (older versions could
 * keep two models' backups under one name).
 */
async function readBackup(
  where: ApplyPaths,
  applied: AppliedEntry,
): Promise<{ bytes: Uint8Array | null } | { problem: string }> {
  if (!applied.existed) return { bytes: null };
  const name = applied.backup;
  if (!isPlainBackupName(name)) {
    return {
      problem: `its recorded backup name ${JSON.stringify(name)} is not a file in ` +
        "config_backups; left as it is",
    };
  }
  const file = join(where.backupsDir, name);
  let bytes: Uint8Array;
  try {
    if (await linkBelow(dirname(where.backupsDir), file) !== null) {
      return { problem: "its backup is reached through a symbolic link; left as it is" };
    }
    bytes = await Deno.readFile(file);
  } catch (error) {
    return { problem: `its backup cannot be read: ${fileErrorText(error)}` };
  }
  if (await sha256(bytes) !== applied.originalSha256) {
    return {
      problem: `its backup "${name}" is not what was there before apply (not the ` +
        "recorded SHA-256); left as it is",
    };
  }
  return { bytes };
}

/**
 * What an undo run forgets: the manifest is written once, when the run ends (or stops), not once
 * a file: with thousands of models, rewriting it after each file made undo quadratic.
 */
export class UndoBatch {
  readonly #where: ApplyPaths;
  readonly #manifest: AppliedManifest;
  readonly #backups: string[] = [];
  #forgotAny = false;

  constructor(where: ApplyPaths, manifest: AppliedManifest) {
    this.#where = where;
    this.#manifest = manifest;
  }

  /** Drops a model's entry (in memory) once its file is back as it was. */
  forget(id: string, applied: AppliedEntry): void {
    delete this.#manifest.entries[id];
    this.#forgotAny = true;
    if (applied.backup !== null) this.#backups.push(applied.backup);
  }

  /** Removes the folders emptied, writes the manifest, then deletes the forgotten backups. */
  async finish(): Promise<void> {
    if (!this.#forgotAny) return;
    await pruneCreatedDirs(this.#where, this.#manifest);
    await saveApplied(this.#where, this.#manifest);
    const root = dirname(this.#where.backupsDir);
    for (const name of this.#backups) {
      if (!isPlainBackupName(name)) continue;
      const file = join(this.#where.backupsDir, name);
      if (await linkBelow(root, file).catch(() => file) !== null) continue;
      await Deno.remove(file).catch(() => {});
    }
  }
}

/** Restores (or removes) the step's file, then forgets what was applied to it. */
export async function executeUndo(
  manifest: AppliedManifest,
  step: Step,
  batch: UndoBatch,
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
    batch.forget(entry.id, applied);
    return;
  }
  if (entry.action !== "restored") return;
  if (await changedSincePlan(step)) return;
  try {
    if (step.next === null) {
      await Deno.remove(entry.file);
    } else {
      await writeFileAtomic(entry.file, step.next, {
        mode: step.mode ?? undefined,
        beforeRename: () => stillAsPlanned(step),
      });
    }
  } catch (error) {
    if (!(error instanceof ChangedSincePlan)) {
      undone(step, `cannot restore it: ${fileErrorText(error)}`);
    }
    return;
  }
  batch.forget(entry.id, applied);
}

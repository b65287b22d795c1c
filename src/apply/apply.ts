/**
 * `apply`: writes each tested model's working context (less a margin) into LM Studio's per-model
 * default load config, and `apply --undo` takes it back.
 *
 * Safety rules, in the order they act:
 * - Only tested LLMs are applied; the others come back `skipped` with the reason.
 * - A config file that is not strict JSON or not of the known shape (`lmstudio_config.ts`) is left
 *   byte-identical and reported; so is one that cannot be read or written.
 * - Before a file is first changed, its exact bytes (or the fact that there was none, and which
 *   directories had to be made) are recorded (`applied_store.ts`), and only then is the file
 *   replaced, atomically. A crash at any point leaves each file old or new, and undo knows it.
 * - Undo restores a file only if it still holds exactly what LMStrix wrote; a file someone changed
 *   since is left alone with a warning.
 * - The writer lock is held while anything is written; a dry run writes nothing and takes no lock.
 *   An interrupt stops between two files.
 *
 * LM Studio need not be running: only files are read and written.
 *
 * Each run plans every model's step first (`step.ts`), reading each file once, then carries the
 * steps out; this file plans and writes an apply, `undo.ts` an undo, and `config_files.ts` reads
 * the config files and the folders around them.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { UsageError } from "../errors.ts";
import { compareIds } from "../ids.ts";
import { fileSafeModelId, type LmstrixPaths } from "../paths.ts";
import { writeFileAtomic } from "../registry/atomic_write.ts";
import { acquireLock } from "../registry/lock.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import { findModel, loadRegistry, type Registry } from "../registry/registry.ts";
import {
  type AppliedEntry,
  type AppliedManifest,
  type ApplyPaths,
  applyPaths,
  loadApplied,
  saveApplied,
  sha256,
} from "./applied_store.ts";
import {
  configFileFor,
  decode,
  fileErrorText,
  missingDirs,
  pruneCreatedDirs,
  removeStaleTemps,
} from "./config_files.ts";
import { parseConfig, setContextLength, skeletonConfig } from "./lmstudio_config.ts";
import { contextWithMargin, formatMargin, type Margin, NO_MARGIN, parseMargin } from "./margin.ts";
import {
  type ApplyEntry,
  ChangedSincePlan,
  changedSincePlan,
  newStep,
  readStepFile,
  type Refusal,
  refuse,
  type Step,
  stillAsPlanned,
  undone,
} from "./step.ts";
import { executeUndo, planUndo, UndoBatch } from "./undo.ts";
import { refuseLinkBelow } from "../registry/no_follow.ts";

/** Options of {@linkcode applyContextLimits}. */
export interface ApplyOptions {
  /** Say what would change and change nothing. */
  dryRun?: boolean | undefined;
  /** Restore the files as they were before LMStrix changed them. */
  undo?: boolean | undefined;
  /** Tokens (`512`, `"1k"`) or a share (`"10%"`) taken off the working context; default 0. */
  margin?: number | string | Margin | undefined;
  /** Stops between two files (SIGINT/SIGTERM); the caller turns it into its interrupt error. */
  signal?: AbortSignal | undefined;
  /** Called with the plan before anything is written (the table `apply` prints). */
  onPlan?: ((entries: readonly ApplyEntry[]) => void) | undefined;
  /** Called after each model's file is done (written, restored or left), before the next. */
  onEntry?: ((entry: Readonly<ApplyEntry>) => void) | undefined;
  /** Called for each warning (e.g. a file someone changed since the apply). */
  onWarning?: ((message: string) => void) | undefined;
  /**
   * Called just before a config file is replaced (after its backup and the manifest are written):
   * where a save LM Studio makes would be lost; tests use it to make one.
   */
  beforeReplace?: ((file: string) => void | Promise<void>) | undefined;
  /** The clock for `appliedAt` (default `new Date()`). */
  now?: (() => Date) | undefined;
}

/** Thrown by {@linkcode applyContextLimits} when its signal aborts it between two files. */
export class ApplyInterrupted extends Error {
  /** The entries done before the interrupt. */
  readonly done: ApplyEntry[];
  /** Creates the error with what was done. */
  constructor(done: ApplyEntry[]) {
    super("apply was interrupted");
    this.done = done;
  }
}

/**
 * Applies (or with `undo` restores) the context limits of the models `queries` names, or of all
 * of them with `"all"`. Returns one entry per model; throws {@linkcode UsageError} for a bad
 * margin, a model error from the registry for an unknown model, `LockHeldError` when another run
 * writes, and {@linkcode ApplyInterrupted} when the signal stops it.
 */
export async function applyContextLimits(
  paths: LmstrixPaths,
  queries: readonly string[] | "all",
  options: ApplyOptions = {},
): Promise<ApplyEntry[]> {
  const margin = toMargin(options.margin);
  if (queries !== "all" && queries.length === 0) {
    throw new UsageError("Name the models to apply, or pass --all", {
      hint: 'run "lmstrix list" to see the model ids',
    });
  }
  const where = applyPaths(paths);
  // Unknown or ambiguous models fail before the lock is taken: bad input changes nothing.
  if (queries !== "all") {
    const registry = await loadRegistry(paths);
    const applied = options.undo ? loadApplied(where).entries : Object.create(null);
    for (const query of queries) {
      if (applied[query] === undefined) findModel(registry, query);
    }
  }
  const work = async () => {
    const registry = await loadRegistry(paths);
    const manifest = loadApplied(where);
    const steps = options.undo
      ? await planUndo(where, registry, manifest, queries)
      : await planApply(where, registry, manifest, queries, margin);
    options.onPlan?.(steps.map((s) => ({ ...s.entry })));
    if (options.dryRun) return steps.map((s) => s.entry);
    const done: ApplyEntry[] = [];
    // The manifest is written once before the files (apply) and once after them, not per file.
    const batch = options.undo
      ? new UndoBatch(where, manifest)
      : await ApplyBatch.prepare(where, manifest, steps, margin, options);
    const cleaned = new Set<string>();
    try {
      for (const step of steps) {
        if (options.signal?.aborted) throw new ApplyInterrupted(done);
        if (step.entry.file !== null) {
          await removeStaleTemps(where.configDir, dirname(step.entry.file), cleaned);
        }
        if (batch instanceof UndoBatch) {
          await executeUndo(manifest, step, batch, options.onWarning);
        } else await batch.write(step, options);
        done.push(step.entry);
        options.onEntry?.(step.entry);
      }
    } finally {
      await batch.finish();
    }
    return done;
  };
  if (options.dryRun) return await work();
  const lock = await acquireLock(paths);
  try {
    return await work();
  } finally {
    await lock.release();
  }
}

function toMargin(margin: ApplyOptions["margin"]): Margin {
  if (margin === undefined) return NO_MARGIN;
  if (typeof margin === "number") return parseMargin(String(margin));
  if (typeof margin === "string") return parseMargin(margin);
  return parseMargin(formatMargin(margin));
}

/** The records `queries` names (each once, in the order named), or every one for "all". */
function choose(registry: Registry, queries: readonly string[] | "all"): ModelRecord[] {
  if (queries === "all") {
    return Object.values(registry.models).sort((a, b) => compareIds(a.id, b.id));
  }
  const chosen: ModelRecord[] = [];
  for (const query of queries) {
    const record = findModel(registry, query);
    if (!chosen.includes(record)) chosen.push(record);
  }
  return chosen;
}

/** Why a model cannot be applied, or null when it can. */
function notApplicable(record: ModelRecord): string | null {
  if (record.type === "embedding") return "embedding model: no context to apply";
  if (record.status === "missing") return 'no longer in LM Studio (run "lmstrix scan")';
  if (record.status === "untested") return "not tested yet";
  if (record.status === "testing") return "its test has not finished";
  if (record.status === "failed") {
    return `its test failed${record.error ? `: ${record.error}` : ""}`;
  }
  if (record.workingContext === null) return "it has no working context";
  return null;
}

async function planApply(
  where: ApplyPaths,
  registry: Registry,
  manifest: AppliedManifest,
  queries: readonly string[] | "all",
  margin: Margin,
): Promise<Step[]> {
  const steps: Step[] = [];
  for (const record of choose(registry, queries)) {
    steps.push(await planApplyStep(where, manifest, record, margin));
  }
  return steps;
}

/** Reads the model's config file and plans the bytes that set its context length. */
async function planApplyStep(
  where: ApplyPaths,
  manifest: AppliedManifest,
  record: ModelRecord,
  margin: Margin,
): Promise<Step> {
  const step = newStep(
    record.id,
    configFileFor(where.configDir, record.path),
    record,
    where.configDir,
  );
  const refusal = refuseApply(record, step.entry.file, margin, manifest);
  if (refusal !== null) return refuse(step, refusal);
  if (!(await readStepFile(step, true))) return step;
  const { entry } = step;
  let text: string | null = null;
  if (step.current !== null) {
    text = decode(step.current);
    const parsed = text === null
      ? { ok: false as const, problem: "it is not UTF-8 text" }
      : parseConfig(text);
    if (!parsed.ok) {
      return refuse(step, { reason: `left as it is: ${parsed.problem}`, failed: true });
    }
    entry.previous = parsed.contextLength;
  }
  const target = contextWithMargin(record.workingContext!, margin);
  entry.contextLength = target;
  if (entry.previous === target) {
    entry.action = "unchanged";
    entry.reason = manifest.entries[record.id] ? null : "LM Studio's config already has it";
    return step;
  }
  entry.action = "set";
  step.next = new TextEncoder().encode(
    text === null ? skeletonConfig(target) : setContextLength(text, target),
  );
  return step;
}

/** Why the model's file is not to be written, known before reading it; null when it may be. */
function refuseApply(
  record: ModelRecord,
  file: string | null,
  margin: Margin,
  manifest: AppliedManifest,
): Refusal | null {
  const why = notApplicable(record);
  if (why !== null) return { reason: why, failed: false };
  if (file === null) {
    const reason = `its path "${record.path}" does not name a file in LM Studio's config folder`;
    return { reason, failed: true };
  }
  if (contextWithMargin(record.workingContext!, margin) < 1) {
    const reason = `the margin ${
      formatMargin(margin)
    } leaves no context of ${record.workingContext} tokens`;
    return { reason, failed: false };
  }
  const earlier = manifest.entries[record.id];
  if (earlier !== undefined && earlier.modelPath !== record.path) {
    // Undo knows the file at the old path only; one model, one file at a time.
    const reason = `its path changed since lmstrix applied "${earlier.modelPath}": ` +
      `run "lmstrix apply --undo ${record.id}" first`;
    return { reason, failed: true };
  }
  return null;
}

/**
 * An apply run's writes. Before any config file is changed, every backup is written and the
 * manifest records every planned change, in one write: no change reaches the disk that undo does
 * not know about. Each file is then replaced, after a last check that it is as planned. When the
 * run ends (or stops), the manifest is written once more without the changes that were not made.
 * An entry whose file was not changed is harmless meanwhile: undo finds the original there.
 */
class ApplyBatch {
  readonly #where: ApplyPaths;
  readonly #manifest: AppliedManifest;
  /** Steps recorded but not yet written, with the entry they replaced and any new backup. */
  readonly #pending = new Map<Step, { before: AppliedEntry | undefined; backup: string | null }>();
  #changed = false;

  private constructor(where: ApplyPaths, manifest: AppliedManifest) {
    this.#where = where;
    this.#manifest = manifest;
  }

  /** Keeps the backups and records every planned change in the manifest (one write). */
  static async prepare(
    where: ApplyPaths,
    manifest: AppliedManifest,
    steps: readonly Step[],
    margin: Margin,
    options: ApplyOptions,
  ): Promise<ApplyBatch> {
    const batch = new ApplyBatch(where, manifest);
    for (const step of steps) {
      try {
        await batch.#record(step, margin, options);
      } catch (error) {
        undone(step, `cannot keep what it holds now: ${fileErrorText(error)}`);
      }
    }
    if (batch.#changed) await saveApplied(where, manifest);
    return batch;
  }

  async #record(step: Step, margin: Margin, options: ApplyOptions): Promise<void> {
    const { entry, record } = step;
    if (record === null || entry.file === null) return;
    const manifest = this.#manifest;
    const before = manifest.entries[record.id];
    if (entry.action === "unchanged") {
      // A retest that gives the same value: the applied value is current again.
      if (before !== undefined && before.workingContext !== record.workingContext) {
        manifest.entries[record.id] = { ...before, workingContext: record.workingContext! };
        this.#changed = true;
      }
      return;
    }
    if (entry.action !== "set" || step.next === null) return;
    if (await changedSincePlan(step)) return;
    const { applied, newBackup } = await startRecord(
      this.#where,
      manifest,
      step,
      before,
      options.onWarning,
    );
    applied.writtenSha256 = await sha256(step.next);
    applied.contextLength = entry.contextLength!;
    applied.workingContext = record.workingContext!;
    applied.margin = formatMargin(margin);
    applied.appliedAt = (options.now ?? (() => new Date()))().toISOString();
    manifest.entries[record.id] = applied;
    const newDirs = missingDirs(this.#where.configDir, dirname(entry.file))
      .filter((dir) => !manifest.createdDirs.includes(dir));
    manifest.createdDirs.push(...newDirs);
    this.#pending.set(step, { before, backup: newBackup });
    this.#changed = true;
  }

  /** Replaces the step's file, if its change was recorded; a failed write is taken back. */
  async write(step: Step, options: ApplyOptions): Promise<void> {
    const pending = this.#pending.get(step);
    const file = step.entry.file;
    if (pending === undefined || file === null || step.next === null) return;
    try {
      await refuseLinkBelow(this.#where.configDir, dirname(file));
      await Deno.mkdir(dirname(file), { recursive: true });
      await refuseLinkBelow(this.#where.configDir, dirname(file));
      await options.beforeReplace?.(file);
      await writeFileAtomic(file, step.next, {
        mode: step.mode ?? undefined,
        beforeRename: () => stillAsPlanned(step),
      });
      this.#pending.delete(step);
    } catch (error) {
      if (error instanceof ChangedSincePlan) {
        options.onWarning?.(`"${file}" changed while lmstrix was writing it; left as it is`);
      } else undone(step, `cannot write it: ${fileErrorText(error)}`);
    }
  }

  /** Takes back what was recorded but not written, then writes the manifest as it now is. */
  async finish(): Promise<void> {
    const manifest = this.#manifest;
    for (const [step, { before, backup }] of this.#pending) {
      const id = step.entry.id;
      if (before === undefined) delete manifest.entries[id];
      else manifest.entries[id] = before;
      if (backup !== null && before === undefined) {
        await Deno.remove(join(this.#where.backupsDir, backup)).catch(() => {});
      }
    }
    if (this.#pending.size === 0) return;
    this.#pending.clear();
    await pruneCreatedDirs(this.#where, manifest);
    await saveApplied(this.#where, manifest);
  }
}

/**
 * The manifest entry to complete for this write: a copy of the earlier one, or, on the first
 * apply or when the file changed since the last one, a new one whose backup holds the file now
 * (so that undo restores what the user had last, not what was there before).
 */
async function startRecord(
  where: ApplyPaths,
  manifest: AppliedManifest,
  step: Step,
  before: AppliedEntry | undefined,
  onWarning: ((message: string) => void) | undefined,
): Promise<{ applied: AppliedEntry; newBackup: string | null }> {
  const currentSha = step.current === null ? null : await sha256(step.current);
  const changedSince = before !== undefined && currentSha !== before.writtenSha256 &&
    currentSha !== before.originalSha256;
  if (before !== undefined && !changedSince) return { applied: { ...before }, newBackup: null };
  if (changedSince) {
    onWarning?.(
      `"${step.entry.file}" changed since lmstrix last applied it; ` +
        "undo will now restore it as it is now",
    );
  }
  let backup: string | null = null;
  if (step.current !== null) {
    backup = backupName(manifest, step.entry.id);
    const root = dirname(where.backupsDir);
    await refuseLinkBelow(root, where.backupsDir);
    await Deno.mkdir(where.backupsDir, { recursive: true });
    await refuseLinkBelow(root, join(where.backupsDir, backup));
    await writeFileAtomic(join(where.backupsDir, backup), step.current);
  }
  const applied: AppliedEntry = {
    modelPath: step.record!.path,
    existed: step.current !== null,
    backup,
    mode: step.mode,
    originalSha256: currentSha,
    writtenSha256: "",
    contextLength: 0,
    workingContext: 0,
    margin: "",
    appliedAt: "",
  };
  return { applied, newBackup: backup };
}

/**
 * The backup's file name for model `id`: its file-safe id, unless another model's entry already
 * names that file (a manifest of an older version, whose names could clash): then a fresh one.
 */
function backupName(manifest: AppliedManifest, id: string): string {
  const taken = (name: string) =>
    Object.entries(manifest.entries).some(([other, e]) => other !== id && e.backup === name);
  const name = `${fileSafeModelId(id)}.json`;
  return taken(name) ? `${fileSafeModelId(id)}~${crypto.randomUUID().slice(0, 8)}.json` : name;
}

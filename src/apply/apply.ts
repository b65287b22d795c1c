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
 * @module
 */

import { dirname, isAbsolute, join, relative } from "node:path";
import { UsageError } from "../errors.ts";
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
import { parseConfig, setContextLength, skeletonConfig } from "./lmstudio_config.ts";
import { contextWithMargin, formatMargin, type Margin, NO_MARGIN, parseMargin } from "./margin.ts";

/** What `apply` did (or, in a dry run, would do) to one model's config: the `apply --json` entry. */
export interface ApplyEntry {
  /** The model id. */
  id: string;
  /** The config file, or null when the model has no path to name one. */
  file: string | null;
  /** The context length the file set before, or null when it set none (or does not exist). */
  previous: number | null;
  /** The context length the file sets after, or null when it sets none. */
  contextLength: number | null;
  /** What happened. */
  action: "set" | "unchanged" | "restored" | "skipped";
  /** Why it was skipped or left unchanged, or null. */
  reason: string | null;
  /**
   * True when the file could not be changed as asked because of the file itself (not valid
   * JSON, unknown shape, unreadable, unwritable, changed since the apply): the run exits 1.
   */
  failed: boolean;
}

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

/** One model's planned step, with what executing it needs. */
interface Step {
  entry: ApplyEntry;
  record: ModelRecord | null;
  /** The file's bytes now, or null when it does not exist. */
  current: Uint8Array | null;
  /** The bytes to write (apply) or to restore (undo; null: remove the file). */
  next: Uint8Array | null;
  mode: number | null;
  /** A warning to give when the step runs (not in a dry run, whose table says it already). */
  warning?: string;
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
    for (const step of steps) {
      if (options.signal?.aborted) throw new ApplyInterrupted(done);
      if (options.undo) await executeUndo(where, manifest, step, options);
      else await executeApply(where, manifest, step, margin, options);
      done.push(step.entry);
      options.onEntry?.(step.entry);
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
    return Object.values(registry.models).sort((a, b) => compare(a.id, b.id));
  }
  const chosen: ModelRecord[] = [];
  for (const query of queries) {
    const record = findModel(registry, query);
    if (!chosen.includes(record)) chosen.push(record);
  }
  return chosen;
}

/** The config file of the model at `modelPath`, or null when the path would leave the directory. */
export function configFileFor(configDir: string, modelPath: string): string | null {
  const parts = modelPath.split(/[\\/]/);
  if (
    modelPath === "" || isAbsolute(modelPath) || modelPath.includes("\0") ||
    parts.some((part) => part === ".." || part === "") || /^[A-Za-z]:/.test(modelPath)
  ) {
    return null;
  }
  return join(configDir, ...parts) + ".json";
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
    const file = configFileFor(where.configDir, record.path);
    const entry: ApplyEntry = {
      id: record.id,
      file,
      previous: null,
      contextLength: null,
      action: "skipped",
      reason: null,
      failed: false,
    };
    const step: Step = { entry, record, current: null, next: null, mode: null };
    steps.push(step);
    const why = notApplicable(record);
    if (why !== null) {
      entry.reason = why;
      continue;
    }
    if (file === null) {
      entry.reason = `its path "${record.path}" does not name a file in LM Studio's config folder`;
      entry.failed = true;
      continue;
    }
    const target = contextWithMargin(record.workingContext!, margin);
    if (target < 1) {
      entry.reason = `the margin ${
        formatMargin(margin)
      } leaves no context of ${record.workingContext} tokens`;
      continue;
    }
    const earlier = manifest.entries[record.id];
    if (earlier !== undefined && earlier.modelPath !== record.path) {
      // Undo knows the file at the old path only; one model, one file at a time.
      entry.reason = `its path changed since lmstrix applied "${earlier.modelPath}": ` +
        `run "lmstrix apply --undo ${record.id}" first`;
      entry.failed = true;
      continue;
    }
    const read = await readConfig(file);
    if ("problem" in read) {
      entry.reason = read.problem;
      entry.failed = true;
      continue;
    }
    step.current = read.bytes;
    step.mode = read.mode;
    let text: string | null = null;
    if (read.bytes !== null) {
      text = decode(read.bytes);
      const parsed = text === null
        ? { ok: false as const, problem: "it is not UTF-8 text" }
        : parseConfig(text);
      if (!parsed.ok) {
        entry.reason = `left as it is: ${parsed.problem}`;
        entry.failed = true;
        continue;
      }
      entry.previous = parsed.contextLength;
    }
    entry.contextLength = target;
    if (entry.previous === target) {
      entry.action = "unchanged";
      entry.reason = manifest.entries[record.id] ? null : "LM Studio's config already has it";
      continue;
    }
    entry.action = "set";
    step.next = new TextEncoder().encode(
      text === null ? skeletonConfig(target) : setContextLength(text, target),
    );
  }
  return steps;
}

async function executeApply(
  where: ApplyPaths,
  manifest: AppliedManifest,
  step: Step,
  margin: Margin,
  options: ApplyOptions,
): Promise<void> {
  const { entry, record } = step;
  if (record === null || entry.file === null) return;
  const before = manifest.entries[record.id];
  if (entry.action === "unchanged") {
    // A retest that gives the same value: the applied value is current again.
    if (before !== undefined && before.workingContext !== record.workingContext) {
      manifest.entries[record.id] = { ...before, workingContext: record.workingContext! };
      await saveApplied(where, manifest);
    }
    return;
  }
  if (entry.action !== "set" || step.next === null) return;
  const file = entry.file;
  if (await changedSincePlan(step)) return;
  const currentSha = step.current === null ? null : await sha256(step.current);
  const changedSince = before !== undefined && currentSha !== before.writtenSha256 &&
    currentSha !== before.originalSha256;
  let entryNow: AppliedEntry;
  let newBackup: string | null = null;
  if (before === undefined || changedSince) {
    if (changedSince) {
      options.onWarning?.(
        `"${file}" changed since lmstrix last applied it; undo will now restore it as it is now`,
      );
    }
    let backup: string | null = null;
    if (step.current !== null) {
      backup = `${fileSafeModelId(record.id)}.json`;
      await Deno.mkdir(where.backupsDir, { recursive: true });
      await writeFileAtomic(join(where.backupsDir, backup), step.current);
      newBackup = backup;
    }
    entryNow = {
      modelPath: record.path,
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
  } else {
    entryNow = { ...before };
  }
  entryNow.writtenSha256 = await sha256(step.next);
  entryNow.contextLength = entry.contextLength!;
  entryNow.workingContext = record.workingContext!;
  entryNow.margin = formatMargin(margin);
  entryNow.appliedAt = (options.now ?? (() => new Date()))().toISOString();
  // The record first: a change undo does not know about must never reach the disk.
  manifest.entries[record.id] = entryNow;
  const newDirs = missingDirs(where.configDir, dirname(file))
    .filter((dir) => !manifest.createdDirs.includes(dir));
  manifest.createdDirs.push(...newDirs);
  await saveApplied(where, manifest);
  try {
    await Deno.mkdir(dirname(file), { recursive: true });
    await writeFileAtomic(file, step.next, { mode: step.mode ?? undefined });
  } catch (error) {
    if (before === undefined) delete manifest.entries[record.id];
    else manifest.entries[record.id] = before;
    await pruneCreatedDirs(where, manifest);
    await saveApplied(where, manifest);
    if (newBackup !== null && before === undefined) {
      await Deno.remove(join(where.backupsDir, newBackup)).catch(() => {});
    }
    entry.action = "skipped";
    entry.contextLength = entry.previous;
    entry.reason = `cannot write it: ${errorText(error)}`;
    entry.failed = true;
  }
}

async function planUndo(
  where: ApplyPaths,
  registry: Registry,
  manifest: AppliedManifest,
  queries: readonly string[] | "all",
): Promise<Step[]> {
  const ids: string[] = [];
  if (queries === "all") ids.push(...Object.keys(manifest.entries).sort(compare));
  else {
    for (const query of queries) {
      const id = manifest.entries[query] !== undefined ? query : findModel(registry, query).id;
      if (!ids.includes(id)) ids.push(id);
    }
  }
  const steps: Step[] = [];
  for (const id of ids) {
    const applied = manifest.entries[id];
    const file = applied ? configFileFor(where.configDir, applied.modelPath) : null;
    const entry: ApplyEntry = {
      id,
      file,
      previous: null,
      contextLength: null,
      action: "skipped",
      reason: null,
      failed: false,
    };
    const step: Step = {
      entry,
      record: registry.models[id] ?? null,
      current: null,
      next: null,
      mode: null,
    };
    steps.push(step);
    if (applied === undefined) {
      entry.file = registry.models[id]
        ? configFileFor(where.configDir, registry.models[id]!.path)
        : null;
      entry.reason = "lmstrix has not applied anything to it";
      continue;
    }
    if (file === null) {
      entry.reason = `the recorded path "${applied.modelPath}" is not in LM Studio's config folder`;
      entry.failed = true;
      continue;
    }
    const read = await readConfig(file);
    if ("problem" in read) {
      entry.reason = read.problem;
      entry.failed = true;
      continue;
    }
    step.current = read.bytes;
    const currentSha = read.bytes === null ? null : await sha256(read.bytes);
    const currentText = read.bytes === null ? null : decode(read.bytes);
    const currentParsed = currentText === null ? null : parseConfig(currentText);
    entry.previous = currentParsed?.ok ? currentParsed.contextLength : null;
    let original: Uint8Array | null = null;
    if (applied.existed) {
      try {
        original = await Deno.readFile(join(where.backupsDir, applied.backup!));
      } catch (error) {
        entry.reason = `its backup cannot be read: ${errorText(error)}`;
        entry.failed = true;
        continue;
      }
      step.mode = applied.mode;
    }
    const originalParsed = original === null ? null : parseConfig(decode(original) ?? "");
    const originalValue = originalParsed?.ok ? originalParsed.contextLength : null;
    if (currentSha === applied.originalSha256) {
      entry.action = "unchanged";
      entry.contextLength = entry.previous;
      entry.reason = "it is already as it was before apply";
      continue;
    }
    if (currentSha !== applied.writtenSha256) {
      entry.contextLength = entry.previous;
      entry.reason = read.bytes === null
        ? "it was removed since lmstrix applied it; left as it is"
        : "it changed since lmstrix applied it; left as it is";
      entry.failed = true;
      step.warning = `"${file}" ${entry.reason}`;
      continue;
    }
    entry.action = "restored";
    entry.contextLength = originalValue;
    step.next = original;
  }
  return steps;
}

async function executeUndo(
  where: ApplyPaths,
  manifest: AppliedManifest,
  step: Step,
  options: ApplyOptions,
): Promise<void> {
  const { entry } = step;
  const applied = manifest.entries[entry.id];
  if (applied === undefined || entry.file === null) return;
  if (step.warning !== undefined) {
    options.onWarning?.(step.warning);
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
    entry.action = "skipped";
    entry.contextLength = entry.previous;
    entry.reason = `cannot restore it: ${errorText(error)}`;
    entry.failed = true;
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

/**
 * Whether the file changed between the plan and now (LM Studio saving the model's settings, or
 * the user); if so the step is skipped and says why, since writing would throw that change away.
 */
async function changedSincePlan(step: Step): Promise<boolean> {
  const { entry } = step;
  const read = await readConfig(entry.file!);
  const now = "problem" in read ? undefined : read.bytes;
  const same = now !== undefined &&
    (now === null ? step.current === null : step.current !== null && equalBytes(now, step.current));
  if (same) return false;
  entry.action = "skipped";
  entry.contextLength = entry.previous;
  entry.reason = "it changed while lmstrix was working on it; left as it is (run again)";
  entry.failed = true;
  return true;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

type ReadConfig = { bytes: Uint8Array | null; mode: number | null } | { problem: string };

async function readConfig(file: string): Promise<ReadConfig> {
  try {
    const bytes = await Deno.readFile(file);
    const mode = (await Deno.stat(file)).mode;
    return { bytes, mode: mode === null ? null : mode & 0o7777 };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { bytes: null, mode: null };
    return { problem: `cannot read it: ${errorText(error)}` };
  }
}

/** The directories from `configDir` down to `dir` that do not exist, outermost first. */
function missingDirs(configDir: string, dir: string): string[] {
  const missing: string[] = [];
  let current = dir;
  for (;;) {
    try {
      Deno.statSync(current);
      break;
    } catch {
      missing.unshift(relative(configDir, current));
    }
    const parent = dirname(current);
    if (parent === current) break;
    current = parent;
  }
  return missing;
}

/**
 * Removes the folders LMStrix created that are empty now, deepest first, and forgets them; a
 * folder that holds something (another model's config, a file of the user's) stays listed until
 * a later undo empties it.
 */
async function pruneCreatedDirs(where: ApplyPaths, manifest: AppliedManifest): Promise<void> {
  const depth = (dir: string) => join(where.configDir, dir).split(/[\\/]/).length;
  const deepestFirst = [...manifest.createdDirs].sort((a, b) => depth(b) - depth(a));
  for (const dir of deepestFirst) {
    try {
      await Deno.remove(join(where.configDir, dir));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) continue;
    }
    manifest.createdDirs = manifest.createdDirs.filter((d) => d !== dir);
  }
}

function decode(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}

function errorText(error: unknown): string {
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * One model's step in an `apply` or `apply --undo` run: the entry it reports, planned before
 * anything is written, and the bytes executing it needs. The plan reads each file once; the run
 * checks the file is still as read before it writes.
 *
 * @module
 */

import type { ModelRecord } from "../registry/model_record.ts";
import { equalBytes, readConfig } from "./config_files.ts";

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

/** One model's planned step, with what executing it needs. */
export interface Step {
  entry: ApplyEntry;
  record: ModelRecord | null;
  /** The file's bytes now, or null when it does not exist. */
  current: Uint8Array | null;
  /** The bytes to write (apply) or to restore (undo; null: remove the file). */
  next: Uint8Array | null;
  mode: number | null;
  /** LM Studio's config folder, below which no link is followed. */
  configDir: string;
  /** A warning to give when the step runs (not in a dry run, whose table says it already). */
  warning?: string;
}

/** Why a step does nothing, and whether that fails the run. */
export interface Refusal {
  reason: string;
  failed: boolean;
}

/** A step that, until planned further, skips the model's file. */
export function newStep(
  id: string,
  file: string | null,
  record: ModelRecord | null,
  configDir: string,
): Step {
  const entry: ApplyEntry = {
    id,
    file,
    previous: null,
    contextLength: null,
    action: "skipped",
    reason: null,
    failed: false,
  };
  return { entry, record, current: null, next: null, mode: null, configDir };
}

/** Marks the step skipped for `refusal`; returns it. */
export function refuse(step: Step, refusal: Refusal): Step {
  step.entry.reason = refusal.reason;
  step.entry.failed = refusal.failed;
  return step;
}

/**
 * Reads the step's file into `current` (and its mode, if `keepMode`); false, with the step
 * refused, when the file cannot be read.
 */
export async function readStepFile(step: Step, keepMode: boolean): Promise<boolean> {
  const read = await readConfig(step.entry.file!, step.configDir);
  if ("problem" in read) {
    refuse(step, { reason: read.problem, failed: true });
    return false;
  }
  step.current = read.bytes;
  if (keepMode) step.mode = read.mode;
  return true;
}

/** Marks a planned change as not made: the file keeps what it had, and the run fails. */
export function undone(step: Step, reason: string): void {
  step.entry.action = "skipped";
  step.entry.contextLength = step.entry.previous;
  step.entry.reason = reason;
  step.entry.failed = true;
}

/** The reason of a step skipped because its file changed since the plan. */
export const CHANGED_REASON =
  "it changed while lmstrix was working on it; left as it is (run again)";

/**
 * Whether the file changed between the plan and now (LM Studio saving the model's settings, or
 * the user), or can no longer be read; if so the step is skipped and says why, since writing
 * would throw that change away.
 */
export async function changedSincePlan(step: Step): Promise<boolean> {
  const read = await readConfig(step.entry.file!, step.configDir);
  if ("problem" in read) {
    undone(step, read.problem);
    return true;
  }
  const now = read.bytes;
  const same = now === null
    ? step.current === null
    : step.current !== null && equalBytes(now, step.current);
  if (same) return false;
  undone(step, CHANGED_REASON);
  return true;
}

/** Thrown from just before a rename when the file changed since the plan (see the caller). */
export class ChangedSincePlan extends Error {}

/**
 * For `writeFileAtomic`'s last moment: throws {@linkcode ChangedSincePlan} when the step's file
 * is no longer as planned, so that a save made while the backup and the manifest were written is
 * kept. (A save in the microseconds between this check and the rename can still be lost; no
 * portable call renames only if unchanged.)
 */
export async function stillAsPlanned(step: Step): Promise<void> {
  if (await changedSincePlan(step)) throw new ChangedSincePlan(step.entry.reason ?? "changed");
}

/**
 * `lmstrix apply`: puts the measured working contexts into LM Studio's per-model defaults, and
 * `apply --undo` takes them back. The work is in `src/apply/`; this file prints the table of what
 * is (or in a dry run would be) done, before doing it, and picks the exit code.
 */

import type { ApplyEntry } from "../apply/step.ts";
import { UsageError } from "../errors.ts";
import type { LMStrix } from "../lmstrix.ts";
import { displayText, type Output, type Styles } from "../output.ts";
import { formatTokens, shortenMiddle, visibleWidth, wrapWords } from "./format.ts";

/** Options of `apply` as the command line gives them. */
export interface ApplyCommandOptions {
  all?: boolean;
  dryRun?: boolean;
  undo?: boolean;
  margin?: string;
}

/** A dry run's words for what it did not do (`--json` keeps the contract's actions). */
const DRY_RUN_ACTIONS: Record<string, string | undefined> = {
  set: "would set",
  restored: "would restore",
};

/** Width the table keeps within. */
const WIDTH = 80;

/** Pads `text` with spaces to `width` columns (characters, not UTF-16 units). */
function padEnd(text: string, width: number): string {
  return text + " ".repeat(Math.max(0, width - visibleWidth(text)));
}

/**
 * The table `apply` prints: per model the context length in LM Studio's config now, the one it
 * will have, and the action; then the reasons for what is skipped or left unchanged. Fits 80
 * columns: long model ids are shortened in the middle, reasons are wrapped.
 */
export function renderApplyTable(
  entries: readonly ApplyEntry[],
  undo: boolean,
  style?: Styles,
  dryRun = false,
): string {
  const head = ["model", "current", undo ? "original" : "new", "action"];
  // Model ids come from LM Studio: escaped, so no control character reaches the terminal.
  const rows = entries.map((e) => [
    displayText(e.id),
    formatTokens(e.previous),
    e.action === "skipped" ? "-" : formatTokens(e.contextLength),
    dryRun ? DRY_RUN_ACTIONS[e.action] ?? e.action : e.action,
  ]);
  const widths = [1, 2, 3].map((i) => Math.max(head[i]!.length, ...rows.map((r) => r[i]!.length)));
  const modelWidth = Math.min(
    Math.max(head[0]!.length, ...rows.map((r) => visibleWidth(r[0]!))),
    WIDTH - widths.reduce((a, b) => a + b + 2, 0),
  );
  const line = (cells: string[]) =>
    [
      padEnd(shortenMiddle(cells[0]!, modelWidth), modelWidth),
      cells[1]!.padStart(widths[0]!),
      cells[2]!.padStart(widths[1]!),
      cells[3]!,
    ].join("  ");
  // Colour goes on after the padding: escape codes take no room on the screen.
  const colour: Record<string, (s: string) => string> = {
    set: (t) => style?.green(t) ?? t,
    restored: (t) => style?.green(t) ?? t,
    "would set": (t) => style?.green(t) ?? t,
    "would restore": (t) => style?.green(t) ?? t,
    skipped: (t) => style?.yellow(t) ?? t,
  };
  const text = [
    style ? style.bold(line(head)) : line(head),
    ...rows.map((cells) => {
      const plain = line(cells);
      const action = cells[3]!;
      return plain.slice(0, plain.length - action.length) + (colour[action]?.(action) ?? action);
    }),
  ];
  const notes = entries.filter((e) => e.reason !== null);
  if (notes.length > 0) {
    text.push("");
    for (const e of notes) text.push(...wrapWords(displayText(`${e.id}: ${e.reason}`), "", WIDTH));
  }
  return text.join("\n");
}

/** Runs `apply`. Exit 1 when a config file could not be changed as asked. */
export async function runApply(
  lmstrix: LMStrix,
  output: Output,
  models: string[],
  options: ApplyCommandOptions,
  signal: AbortSignal,
): Promise<number> {
  checkOptions(models, options);
  const dryRun = options.dryRun ?? false;
  const undo = options.undo ?? false;
  // What the table already said; a failure found only while writing is reported apart.
  const planned = new Map<string, string | null>();
  const entries = await lmstrix.applyContextLimits(options.all ? "all" : models, {
    dryRun,
    undo,
    margin: options.margin,
    signal,
    onPlan: (plan) => {
      for (const e of plan) planned.set(e.id, e.reason);
      if (output.json || plan.length === 0) return;
      output.data(renderApplyTable(plan, undo, output.style, dryRun));
    },
    onWarning: (message) => output.warn(message),
  });
  if (output.json) {
    output.document({
      applied: entries.map(({ id, file, previous, contextLength, action, reason }) => ({
        id,
        file,
        previous,
        contextLength,
        action,
        reason,
      })),
      dryRun,
    });
  }
  output.info(summary(entries, undo, dryRun, undoCommand(models, options, entries)));
  const failed = entries.filter((e) => e.failed);
  reportFailures(output, failed, planned);
  return failed.length > 0 ? 1 : 0;
}

/** Refuses model names with --all, neither of them, and --margin with --undo. */
function checkOptions(models: string[], options: ApplyCommandOptions): void {
  const verb = options.undo ? "apply --undo" : "apply";
  if (options.all && models.length > 0) {
    throw new UsageError("Pass model names or --all, not both", {
      hint: `e.g. "lmstrix ${verb} --all", or name models from "lmstrix list"`,
    });
  }
  if (!options.all && models.length === 0) {
    throw new UsageError(`Name the models to ${options.undo ? "undo" : "apply"}, or pass --all`, {
      hint: `e.g. "lmstrix ${verb} --all --dry-run", or name models from "lmstrix list"`,
    });
  }
  if (options.undo && options.margin !== undefined) {
    throw new UsageError("--margin has no meaning with --undo", {
      hint: "undo restores the files as they were before apply",
    });
  }
}

/**
 * The command that undoes this run: the same models (as the registry names them), or `--all`
 * when the run took them all or names too many to type.
 */
function undoCommand(
  models: readonly string[],
  options: ApplyCommandOptions,
  entries: readonly ApplyEntry[],
): string {
  const set = entries.filter((e) => e.action === "set").map((e) => e.id);
  const named = options.all || set.length === 0 || set.length > MAX_NAMED_IN_UNDO ||
      set.some((id) => !/^[\w.@:/+-]+$/.test(id))
    ? "--all"
    : set.join(" ");
  return models.length === 0 && !options.all ? "" : `lmstrix apply --undo ${named}`;
}

/** Beyond this many models, the undo command suggested is `--undo --all`. */
const MAX_NAMED_IN_UNDO = 3;

/** What the run did, in a sentence or three for stderr. */
function summary(
  entries: readonly ApplyEntry[],
  undo: boolean,
  dryRun: boolean,
  undoWith: string,
): string {
  const changed = entries.filter((e) => e.action === (undo ? "restored" : "set")).length;
  const s = changed === 1 ? "" : "s";
  if (entries.length === 0) {
    return undo
      ? "Nothing to undo: lmstrix has not applied anything."
      : 'The registry is empty: run "lmstrix scan" and "lmstrix test --all" first.';
  }
  if (dryRun) return `Dry run: nothing was written; ${changed} config file${s} would change.`;
  if (changed === 0) return undo ? "Nothing was restored." : "Nothing to change.";
  if (undo) return `Restored ${changed} config file${s}.`;
  return `Set the default context length of ${changed} model${s} in LM Studio.\n` +
    "A model LM Studio has loaded keeps its old context until it is reloaded.\n" +
    `"${undoWith}" puts the files back as they were.`;
}

/**
 * Names each file left as it was, unless the table already gave that reason (with --json, which
 * prints no table, every one), then counts them.
 */
function reportFailures(
  output: Output,
  failed: readonly ApplyEntry[],
  planned: ReadonlyMap<string, string | null>,
): void {
  for (const e of failed) {
    if (output.json || planned.get(e.id) !== e.reason) {
      output.error(`Left "${e.file ?? e.id}" as it is: ${e.reason}`);
    }
  }
  if (failed.length > 0 && !output.json) {
    output.warn(
      `${failed.length} config file${failed.length === 1 ? " was" : "s were"} left as ` +
        `${failed.length === 1 ? "it was" : "they were"} (see above)`,
    );
  }
}

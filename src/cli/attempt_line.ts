/**
 * One attempt as a line of text, the same in `test`'s progress and in `show`'s latest attempts.
 *
 * @module
 */

import type { AttemptLogEntry } from "../registry/attempt_log.ts";
import { formatDuration } from "./format.ts";

/**
 * `<phase> <action> <size>: <outcome> (<duration>)`, e.g.
 * `working needle prompt 8128 tokens in ctx 8192: pass (3.1 s)`. Sizes are exact token counts.
 */
export function formatAttempt(entry: AttemptLogEntry): string {
  const size = entry.action === "load"
    ? `ctx ${entry.askedContext}${
      entry.actualContext !== null && entry.actualContext !== entry.askedContext
        ? ` (reported ${entry.actualContext})`
        : ""
    }`
    : entry.action === "needle"
    ? `prompt ${entry.promptTokens ?? "?"} tokens in ctx ${entry.askedContext}`
    : `in ctx ${entry.askedContext}`;
  return `${entry.phase} ${entry.action} ${size}: ${entry.outcome} ` +
    `(${formatDuration(entry.durationMs)})`;
}

/** The attempt's time in UTC to the second, with its zone: `2025-01-31 14:05:09Z`. */
export function formatAttemptTime(entry: AttemptLogEntry): string {
  const time = new Date(entry.time);
  if (Number.isNaN(time.getTime())) return entry.time;
  return time.toISOString().slice(0, 19).replace("T", " ") + "Z";
}

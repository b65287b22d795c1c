/**
 * One attempt as a line of text, the same in `test`'s progress and in `show`'s latest attempts.
 *
 * @module
 */

import type { AttemptLogEntry } from "../registry/attempt_log.ts";
import { formatDuration, formatTokens } from "./format.ts";

/**
 * What an attempt did (`working needle 8,128 tokens in ctx 8,192`, `loadable check ctx 61,043`)
 * and its verdict (`pass`, `started`), apart, so that a line fitted to a terminal can shorten
 * around them and never cut the verdict. Sizes are exact token counts.
 */
export function attemptParts(entry: AttemptLogEntry): { what: string; verdict: string } {
  const size = entry.action === "load"
    ? `ctx ${formatTokens(entry.askedContext)}${
      entry.actualContext !== null && entry.actualContext !== entry.askedContext
        ? ` (reported ${formatTokens(entry.actualContext)})`
        : ""
    }`
    : entry.action === "check"
    ? `ctx ${formatTokens(entry.askedContext)}`
    : entry.action === "needle"
    ? `${entry.promptTokens === null ? "?" : formatTokens(entry.promptTokens)} tokens in ctx ${
      formatTokens(entry.askedContext)
    }`
    : `in ctx ${formatTokens(entry.askedContext)}`;
  // A one-size check's attempts (`test --ctx`) are evidence beside the search, not part of it.
  const check = (entry as { check?: unknown }).check;
  const phase = typeof check === "number" ? "one-size check" : entry.phase;
  return { what: `${phase} ${entry.action} ${size}`, verdict: entry.outcome };
}

/**
 * `<phase> <action> <size>: <outcome> (<duration>)`, e.g.
 * `working needle 8,128 tokens in ctx 8,192: pass (3.1 s)`.
 */
export function formatAttempt(entry: AttemptLogEntry): string {
  const { what, verdict } = attemptParts(entry);
  return `${what}: ${verdict} (${formatDuration(entry.durationMs)})`;
}

/** The attempt's time in UTC to the second, with its zone: `2025-01-31 14:05:09Z`. */
export function formatAttemptTime(entry: AttemptLogEntry): string {
  const time = new Date(entry.time);
  if (Number.isNaN(time.getTime())) return entry.time;
  return time.toISOString().slice(0, 19).replace("T", " ") + "Z";
}

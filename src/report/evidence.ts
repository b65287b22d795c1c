/**
 * What the report draws of one model's attempt log: the attempts of its latest search (which may
 * span runs that resumed it) and every one-size check, told apart by the lines that open runs.
 *
 * A log holds every run ever made of the model: a forced retest adds a new search after the old
 * one, and drawing both would show two searches' probes as one. The latest search is what the
 * registry's numbers rest on; older attempts are counted, not drawn.
 *
 * @module
 */

import { isObject } from "../json.ts";
import { type AttemptLogEntry, parseAttemptLine } from "../registry/attempt_log.ts";

/** One attempt as the report draws it. */
export interface DrawnAttempt extends AttemptLogEntry {
  /** The size a one-size check asked about, for a check's attempts. */
  check?: number;
}

/** The attempts of one model the report draws. */
export interface Evidence {
  /** The latest search's attempts, oldest first (resumed runs included). */
  search: DrawnAttempt[];
  /** Every one-size check's attempts, oldest first. */
  checks: DrawnAttempt[];
  /** Attempts of earlier searches, not drawn. */
  earlier: number;
}

/** Sorts the lines of an attempt log (its text) into the {@link Evidence} the report draws. */
export function evidenceOf(logText: string): Evidence {
  const evidence: Evidence = { search: [], checks: [], earlier: 0 };
  for (const line of logText.split("\n")) {
    const start = runStartOf(line);
    if (start !== undefined) {
      // A new search (not a resumed one, not a check) makes the attempts before it history.
      if (!start.check && !start.resumed) {
        evidence.earlier += evidence.search.length;
        evidence.search = [];
      }
      continue;
    }
    const entry = parseAttemptLine(line) as DrawnAttempt | undefined;
    if (entry === undefined) continue;
    if (typeof entry.check === "number") evidence.checks.push(entry);
    else evidence.search.push(entry);
  }
  return evidence;
}

/** The line that opens a run, if `line` is one: whether it resumed, whether it is a check. */
function runStartOf(line: string): { resumed: boolean; check: boolean } | undefined {
  if (!line.includes('"run-start"')) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    if (!isObject(value) || value.event !== "run-start") return undefined;
    const config = isObject(value.config) ? value.config : {};
    return { resumed: value.resumed === true, check: typeof config.check === "number" };
  } catch {
    return undefined;
  }
}

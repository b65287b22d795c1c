/**
 * Loads a search asked for whose outcome its earlier answers already implied (issue 16): at or
 * below a size that loaded, at or above one that was refused, above what auto-fit answered (it
 * fits to what the machine holds, so a larger request gets the same answer). A load that hosts a
 * probe (a `2+2=` or a needle follows on it: the contract's confirming reload, a load-level test,
 * a reload after the instance vanished) is not a question about loading and is never counted.
 * Checks count likewise: one at or below a size that started or loaded, or at or above one the
 * guardrail refused. Used by the bench (over the prior's truths) and by the property test.
 *
 * @module
 */

import type { Attempt } from "../../src/search/context_search.ts";

/** The attempts of `attempts` that were load requests with an implied outcome. */
export function impliedLoads(attempts: readonly Attempt[]): Attempt[] {
  let loaded = -Infinity;
  let started = -Infinity;
  let refused = Infinity;
  let checkRefused = Infinity;
  let fitted = Infinity;
  const implied: Attempt[] = [];
  attempts.forEach((attempt, index) => {
    const x = attempt.context;
    if (attempt.action === "check") {
      if (x <= Math.max(loaded, started) || x >= checkRefused) implied.push(attempt);
      if (attempt.outcome === "started") started = Math.max(started, x);
      else checkRefused = Math.min(checkRefused, x);
      return;
    }
    if (attempt.action !== "load") return;
    const known = x <= loaded || x >= Math.min(refused, checkRefused) || x > fitted;
    if (known && !hostsProbe(attempts, index)) implied.push(attempt);
    if (attempt.outcome === "loaded") loaded = Math.max(loaded, x);
    else if (attempt.outcome === "fitted" && attempt.actual !== undefined) {
      fitted = Math.min(fitted, attempt.actual);
    } else if (attempt.outcome === "refused") refused = Math.min(refused, x);
  });
  return implied;
}

/** Whether a `2+2=` or a needle runs on the instance the load at `index` made. */
function hostsProbe(attempts: readonly Attempt[], index: number): boolean {
  const next = attempts[index + 1];
  return attempts[index]?.outcome === "loaded" && next !== undefined &&
    (next.action === "sanity" || next.action === "needle");
}

/** Loads that followed a prediction which killed the engine (the instance had vanished). */
export function crashReloads(attempts: readonly Attempt[]): number {
  let count = 0;
  attempts.forEach((attempt, index) => {
    const before = attempts[index - 1];
    if (attempt.action === "load" && before?.excerpt?.includes("crashed") === true) count++;
  });
  return count;
}

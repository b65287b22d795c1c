/**
 * The reference algorithm the bench compares the search with: the original plan of two plain
 * midpoint bisections over [minContext, cap], reloading at every step. The first judges "loads
 * and reports the asked size"; the second judges the `2+2=` answer alone and never fills the
 * context, so it cannot see a model that loads and chats but loses the needle. Pure, like the
 * search: same {@link Probe}, same {@link SearchResult}.
 *
 * @module
 */

import type { Attempt, Probe, SearchConfig, SearchResult } from "./context_search.ts";
import { initialState, searchCap } from "./context_search.ts";

/** Runs the reference algorithm (no resume, no hooks) and unloads at the end. */
export async function referenceSearch(
  config: SearchConfig,
  probe: Probe,
): Promise<SearchResult> {
  const state = initialState(config);
  const attempts: Attempt[] = [];
  let loads = 0;

  /** Loads at `context`; with `sanity`, also asks `2+2=` when the load kept the asked size. */
  const judge = async (context: number, sanity: boolean): Promise<boolean> => {
    const phase = sanity ? "working" : "loadable";
    loads++;
    const outcome = await probe.load(context);
    if (outcome.kind === "refused") {
      attempts.push({
        phase,
        action: "load",
        context,
        outcome: "refused",
        excerpt: outcome.message,
      });
      return false;
    }
    const exact = outcome.actual === context;
    attempts.push({
      phase,
      action: "load",
      context,
      actual: outcome.actual,
      outcome: exact ? "loaded" : "fitted",
    });
    if (!exact || !sanity) return exact;
    const answer = await probe.sanity();
    attempts.push({
      phase,
      action: "sanity",
      context,
      outcome: answer.pass ? "pass" : "fail",
      excerpt: answer.excerpt,
    });
    return answer.pass;
  };

  /** Largest size in [minContext, top] that `ok` accepts, to the precision; null if none. */
  const bisect = async (top: number, ok: (x: number) => Promise<boolean>) => {
    if (top < config.minContext) return null;
    if (await ok(top)) return top;
    let lo = config.minContext;
    let hi = top;
    let loTested = false;
    while (hi - lo > config.precision) {
      const mid = Math.floor((lo + hi) / 2);
      if (await ok(mid)) {
        lo = mid;
        loTested = true;
      } else hi = mid;
    }
    if (!loTested && !(await ok(lo))) return null;
    return lo;
  };

  const loadable = await bisect(searchCap(config), (x) => judge(x, false));
  const working = loadable === null ? null : await bisect(loadable, (x) => judge(x, true));
  await probe.unload();
  state.phase = "done";
  state.loadable = loadable;
  state.loadOk = loadable;
  state.working = working;
  state.workOk = working;
  return {
    loadable,
    working,
    attempts,
    state,
    loads,
    promptTokens: 0,
    prefillTokens: 0,
  };
}

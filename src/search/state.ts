/**
 * The search state's life cycle: a new one ({@link initialState}), an old saved one made whole
 * ({@link normaliseState}), and the check of the settings both start from.
 *
 * @module
 */

import { choosePlan, noCosts } from "./plan.ts";
import type { NormalState, SearchConfig, SearchState } from "./types.ts";

/**
 * A saved state made whole: fields added after version 1 was first saved get their neutral
 * values once, here, so that the search never needs a fallback at each use.
 */
export function normaliseState(saved: SearchState): NormalState {
  const state = structuredClone(saved);
  const costs = { ...noCosts(), ...state.costs };
  return {
    ...state,
    hintBelow: state.hintBelow ?? null,
    hintChecked: state.hintChecked ?? null,
    promptFailOn: state.promptFailOn ?? null,
    loadableLoads: state.loadableLoads ?? 0,
    costs,
    plan: state.plan ?? choosePlan(costs),
    lastRefusal: state.lastRefusal ?? null,
    checks: state.checks ?? null,
    checkOk: state.checkOk ?? null,
    requests: state.requests ?? 0,
    relearns: state.relearns ?? 0,
    failure: state.failure ?? null,
  };
}

/** State of a search that has not started. */
export function initialState(config: SearchConfig): NormalState {
  validateConfig(config);
  return {
    version: 1,
    phase: "loadable",
    loadOk: null,
    loadFail: null,
    fitHint: null,
    saneOk: null,
    saneFail: null,
    loadable: null,
    workOk: null,
    workFail: null,
    workFailLoaded: null,
    hint: null,
    hintBelow: null,
    hintChecked: null,
    promptFailOn: null,
    distrustPrompts: false,
    promptPassed: false,
    backoff: 0,
    instance: null,
    target: null,
    needles: 0,
    loadableLoads: 0,
    working: null,
    costs: noCosts(),
    plan: choosePlan(noCosts()),
    lastRefusal: null,
    checks: null,
    checkOk: null,
    requests: 0,
    relearns: 0,
    failure: null,
  };
}

/** Throws a RangeError naming the first setting a search cannot run with. */
export function validateConfig(config: SearchConfig): void {
  const { declared, minContext, precision, reserve } = config;
  const integers = { declared, minContext, precision, reserve, maxContext: config.maxContext ?? 1 };
  for (const [name, value] of Object.entries(integers)) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`Search setting "${name}" must be a non-negative integer, got ${value}`);
    }
  }
  if (precision < 1) throw new RangeError(`Search precision must be at least 1, got ${precision}`);
  if (minContext <= reserve) {
    throw new RangeError(
      `Search minContext (${minContext}) must exceed the prompt reserve (${reserve})`,
    );
  }
}

/**
 * The context-limit search's types: what it is asked ({@link SearchConfig}), what it asks of the
 * outside world ({@link Probe}), what it records ({@link Attempt}, {@link SearchState}) and what
 * it returns ({@link SearchResult}). All JSON-serialisable where they are saved.
 *
 * @module
 */

import type { PrefillCurve, PrefillSample } from "./prefill_curve.ts";

/** What the search is asked to find and how precisely. */
export interface SearchConfig {
  /** Context length the model declares. */
  declared: number;
  /** Smallest context worth testing; below it the model counts as failed (limit `null`). */
  minContext: number;
  /** Hard cap on every load: nothing is ever loaded above it. Default: `declared`. */
  maxContext?: number;
  /** Each reported limit is at most the truth and at least the truth minus this many tokens. */
  precision: number;
  /** Tokens left free in the working probe's prompt (the prompt is `context - reserve` long). */
  reserve: number;
  /**
   * The chance that a model works at the full length of an instance as large as memory allows,
   * as the shelf's tested models say (`shelf_share.ts`); the working plan's default when unset.
   */
  worksAtLimit?: number;
}

/**
 * Result of asking for a load at some context length; `seconds`, when the probe measured it, is
 * what the load (or the refusal) took, for the cost model.
 */
export type LoadOutcome =
  | { kind: "loaded"; actual: number; seconds?: number }
  | {
    kind: "refused";
    message: string;
    seconds?: number;
    /**
     * Whether LM Studio refused before it started loading (no load progress was reported): its
     * guardrail's way, quick and decided by the memory estimate. `false`: it refused after the
     * load was under way (the engine failed to allocate, or crashed). Unset: not observed.
     */
    early?: boolean;
  };

/**
 * Result of a check ({@link Probe.check}): LM Studio started loading at that size (the probe
 * stopped it at once; nothing stays loaded), or refused before it started.
 */
export type CheckOutcome =
  | {
    kind: "started";
    seconds?: number;
    /**
     * LM Studio loaded it all the same: the cancel came too late, or the server does not honour
     * it (the probe unloaded the instance). Such a check cost a load.
     */
    completed?: boolean;
  }
  | { kind: "refused"; message: string; seconds?: number };

/** A graded answer of the loaded model. */
export interface Answer {
  /** Whether the answer holds what was asked for. */
  pass: boolean;
  /** A short excerpt of the completion, for the trace. */
  excerpt: string;
  /** Set when the prediction killed the engine: a failed answer, and the instance is gone. */
  crashed?: boolean;
  /**
   * What processing the prompt took, in seconds: the server's `timeToFirstTokenSec` where it
   * says, else the wall clock of the prediction. Tells whether the prompt cache works.
   */
  prefillSeconds?: number;
  /** What the whole prediction took, in seconds (prefill and the answer's generation), if timed. */
  seconds?: number;
}

/** What the search needs from the outside world: loading and asking one model. */
export interface Probe {
  /** Loads the model at `context`, unloading any instance loaded before. */
  load(context: number): Promise<LoadOutcome>;
  /** Asks `2+2=` of the loaded instance. */
  sanity(): Promise<Answer>;
  /**
   * Needle probe on the loaded instance with a prompt of exactly `promptTokens` tokens; `fresh`
   * asks for a new haystack/needle seed (used by the confirm step); `depth` in [0,1] where the
   * asked needle sits.
   */
  needle(promptTokens: number, opts: { fresh: boolean; depth: number }): Promise<Answer>;
  /** Unloads whatever this probe loaded. */
  unload(): Promise<void>;
  /**
   * Optional: asks for a load at `context` and cancels it as soon as LM Studio reports load
   * progress, i.e. once its guardrail let the load start; leaves nothing loaded (any instance the
   * cancel came too late for is unloaded), and unloads any instance loaded before, like `load`.
   */
  check?(context: number): Promise<CheckOutcome>;
}

/** One step of the search, as traced and logged. */
export interface Attempt {
  /** Which limit the attempt was about; "confirm" re-checks a working limit at a fresh load. */
  phase: "loadable" | "working" | "confirm";
  /** What was done. */
  action: "load" | "check" | "sanity" | "needle";
  /** Asked load size, or the loaded size for sanity and needle. */
  context: number;
  /** Context length reported after a load. */
  actual?: number;
  /** Prompt length of a needle probe. */
  promptTokens?: number;
  /** Where the asked needle sat, for a needle probe. */
  depth?: number;
  /** Whether a needle probe asked for a new haystack seed. */
  fresh?: boolean;
  /** What happened; "crashed": the process died during this load (it counts as failed). */
  outcome: "loaded" | "fitted" | "refused" | "started" | "pass" | "fail" | "crashed";
  /** Completion excerpt or refusal message. */
  excerpt?: string;
  /** The plan chosen after this attempt, when its measurements changed it (one sentence). */
  decision?: string;
}

/**
 * What the run measured of this model's costs (all runs of the search), in seconds: loads that
 * succeeded (fitted ones included: they read the weights too), loads that were refused, and the
 * prompt cache as the server's own prefill times show it.
 */
export interface MeasuredCosts {
  /** Loads that succeeded and were timed. */
  loads: number;
  /** Their total seconds. */
  loadSeconds: number;
  /** Refused loads that were timed. */
  refusals: number;
  /** Their total seconds. */
  refusalSeconds: number;
  /** Whether a prompt extending the previous one paid only for its new tokens; null: unknown. */
  promptCache: boolean | null;
  /** Prefill seconds per token of the latest cold prompt (nothing cached), for the cache test. */
  coldSecondsPerToken: number | null;
  /** Prompt tokens per second of the longest cold prompt that passed (the working size's). */
  prefillTokensPerSec: number | null;
  /** The prompt length that speed was measured at. */
  prefillMeasuredAt: number | null;
  /** Predictions that killed the engine (each costs a reload). */
  crashes: number;
  /** Checks that started and were timed (absent in costs saved before checks existed). */
  checks?: number;
  /** Their total seconds: the wait for LM Studio's first progress report, and the cancel. */
  checkSeconds?: number;
  /** Checks LM Studio loaded all the same (the cancel too late or not honoured). */
  checksCompleted?: number;
  /** The latest timed predictions: positions prefilled and seconds (for the prefill curve). */
  prefillSamples?: PrefillSample[];
  /** The prefill curve fitted to them (`prefill_curve.ts`); null until one was timed. */
  prefillCurve?: PrefillCurve | null;
  /** Needles timed whole, and their seconds beyond the time to first token (the answer). */
  needlesTimed?: number;
  /** See {@link MeasuredCosts.needlesTimed}. */
  needleExtraSeconds?: number;
}

/** How the search spends its loads and prompts, chosen from {@link MeasuredCosts}. */
export interface SearchPlan {
  /** What a load that succeeds costs in refused loads, as the load planner weighs them. */
  loadCostRatio: number;
  /** "lean": aim above the middle, where loads are likely refused; "bisect": plain bisection. */
  refusals: "lean" | "bisect";
  /**
   * "climb": small steps on the prompt cache; "jump" (no cache): grow by half (or the full length
   * first, where that is expected to cost less), then bisect.
   */
  prompts: "climb" | "jump";
  /** What was known of the prompt cache when the plan was made. */
  promptCache: boolean | null;
  /**
   * Whether the loadable bisection runs on checks ({@link Probe.check}): LM Studio refuses
   * before it starts loading (its guardrail), so a load stopped as it starts tells the same as a
   * full one, for the price of a refusal; one real load then proves the result. Absent in plans
   * saved before checks existed.
   */
  checks?: boolean;
}

/** A load-level test in progress: load at `context`, check health, probe at full length. */
export interface SearchTarget {
  /** Load size under test. */
  context: number;
  /** Whether the needle asks for a new seed: set when this test confirms a prompt-level result. */
  fresh: boolean;
  /** Whether a failure here continues the back-off (a failed confirmation, or a back-off step). */
  backoff?: boolean;
  /** Whether only the `2+2=` health at this load is asked (no needle). */
  sanityOnly?: boolean;
}

/**
 * Everything the search knows, JSON-serialisable: persist the copies given to the hooks and pass
 * the last one back to resume. All bounds are context lengths (loads), never prompt lengths.
 */
export interface SearchState {
  /** Format version of this object. */
  version: 1;
  /** Which limit is being searched; "done" once both are known. */
  phase: "loadable" | "working" | "done";
  /** Largest size known to load and report itself exactly. */
  loadOk: number | null;
  /** Smallest size known not to (refused, fitted or crashed). */
  loadFail: number | null;
  /** Context reported by the latest fitted load: LM Studio's own guess at the limit. */
  fitHint: number | null;
  /** Largest loaded size at which `2+2=` was answered right. */
  saneOk: number | null;
  /** Smallest loaded size at which it was not (the model is broken there and above). */
  saneFail: number | null;
  /** Loadable context once the loadable phase ended. */
  loadable: number | null;
  /** Largest size confirmed working: loaded there, the full-length needle passed. */
  workOk: number | null;
  /** Smallest size known not to work (at a load there, or by a prompt on a larger instance). */
  workFail: number | null;
  /** Smallest size that failed while loaded at exactly that size (a `null` report needs one). */
  workFailLoaded: number | null;
  /** Largest size whose prompt passed on a larger instance, not yet confirmed by a load there. */
  hint: number | null;
  /** The pass below `hint` (the hint before it): the fallback when a recheck fails the hint. */
  hintBelow?: number | null;
  /** The hint that also passed with a needle at another depth (ready for its confirmation). */
  hintChecked?: number | null;
  /** Size of the instance on which the prompt that set `workFail` failed. */
  promptFailOn?: number | null;
  /** Set once a load contradicted a prompt-level result: load-level tests only from then on. */
  distrustPrompts: boolean;
  /** Whether any prompt-level needle has passed (none at all makes the failures suspect). */
  promptPassed: boolean;
  /** Consecutive failed confirmations: the back-off step below the failure doubles with each. */
  backoff: number;
  /** Size of the latest successful load (prompt-level probes run on it); not loaded on resume. */
  instance: number | null;
  /** Load-level test in progress. */
  target: SearchTarget | null;
  /** Needle probes sent so far (all runs): picks the next needle depth. */
  needles: number;
  /** Loads of the loadable phase so far (all runs): bounds the extra loads of the planner. */
  loadableLoads?: number;
  /** Working context once the search is done. */
  working: number | null;
  /** Set while a load is under way: if the run dies there, the next run counts it as crashed. */
  pendingLoad?: number;
  /** What was measured of this model's costs (absent in states saved before it existed). */
  costs?: MeasuredCosts;
  /** The plan in force (absent in states saved before it existed). */
  plan?: SearchPlan;
  /** LM Studio's text for the latest refused load: the reason when nothing loads. */
  lastRefusal?: string | null;
  /**
   * Whether the loadable bisection uses checks: null until a refusal shows when LM Studio
   * refuses (or where the probe has no checks); true once a refusal came before any load
   * progress (the guardrail's way); false once one came after it (an engine failure: only a
   * full load can tell), or once a real load failed where a check had started.
   */
  checks?: boolean | null;
  /** Largest size a check saw start loading, not yet proven by a real load. */
  checkOk?: number | null;
  /** Requests sent to LM Studio for this model (all runs): loads, checks, `2+2=` and needles. */
  requests?: number;
  /** Times a size that had loaded failed to load later, sending the search back to loading. */
  relearns?: number;
  /** Why the search gave up (loads not repeatable, or too many requests); null: it did not. */
  failure?: string | null;
}

/**
 * A {@link SearchState} with every field added after version 1 filled in: what the search runs
 * on, so that no use needs a fallback ({@link normaliseState} makes one from a saved state).
 */
export type NormalState =
  & SearchState
  & Required<
    Pick<
      SearchState,
      | "hintBelow"
      | "hintChecked"
      | "promptFailOn"
      | "loadableLoads"
      | "costs"
      | "plan"
      | "lastRefusal"
      | "checks"
      | "checkOk"
      | "requests"
      | "relearns"
      | "failure"
    >
  >;

/** Callbacks through which the caller persists progress. */
export interface SearchHooks {
  /**
   * Called before every load with the state that records `pendingLoad`, so the caller can
   * persist it: if the machine dies during the load, the next run treats that size as failed.
   */
  beforeLoad?(context: number, state: SearchState): Promise<void> | void;
  /** Called after every attempt with the new state (persist it: resume point). */
  afterAttempt?(attempt: Attempt, state: SearchState): Promise<void> | void;
}

/** What a search found and what it cost. */
export interface SearchResult {
  /** Loadable context; null: nothing at or above minContext loads. */
  loadable: number | null;
  /** Working context; null: nothing works. */
  working: number | null;
  /** Trace of this run. */
  attempts: Attempt[];
  /** Final state (phase "done"). */
  state: SearchState;
  /** Loads in this run (checks not included). */
  loads: number;
  /** Checks in this run: loads stopped as LM Studio started them ({@link Probe.check}). */
  checks: number;
  /** Needle prompt tokens sent in this run (the sum of prompt lengths; `2+2=` not counted). */
  promptTokens: number;
  /**
   * Estimated prompt tokens the server had to process in this run: a needle prompt costs only
   * what goes beyond the previous prompt on the same instance (the server keeps the common prefix).
   */
  prefillTokens: number;
  /** What was measured of the model's costs (all runs). */
  costs: MeasuredCosts;
  /** The plan in force at the end. */
  plan: SearchPlan;
  /** LM Studio's text for the latest refused load, or null: the reason when nothing loads. */
  lastRefusal: string | null;
  /**
   * Why the search gave up without limits (both null), in words for a person, or null: the loads
   * stopped being repeatable, or the model took more requests than any search needs.
   */
  failure: string | null;
}

/** Options of {@link searchContextLimits}. */
export interface SearchOptions {
  /** State to resume from (the last one given to a hook); default: a new search. */
  state?: SearchState;
  /** Progress callbacks. */
  hooks?: SearchHooks;
}

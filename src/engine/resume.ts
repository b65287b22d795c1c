/**
 * Where a model's test starts: from its saved search, or afresh; and what to make of a run that
 * died during a load. Pure: decided from the stored record, the run's configuration and the
 * evidence the engine gathered (instances left loaded, the machine's boot time).
 *
 * @module
 */

import type { AttemptLogEntry } from "../registry/attempt_log.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import { type BootMark, restartedSince } from "./boot_time.ts";
import { initialState, type SearchConfig, type SearchState } from "../search/context_search.ts";
import { sameConfig } from "./test_options.ts";

/**
 * A search as the registry stores it: the search's own state, plus what the engine needs to go
 * on with it exactly and to judge a death during a load.
 */
export interface SavedSearch extends SearchState {
  /** The configuration the search was started with. */
  config?: SearchConfig;
  /** The haystack seed in use. */
  seed?: number;
  /** While a load is under way (`pendingLoad`): when the marker was written (ISO 8601). */
  pendingSince?: string;
  /** While a load is under way: the machine's boot when the marker was written. */
  pendingBoot?: BootMark;
  /** While a load is under way: the state after the last finished attempt, to retry from. */
  settled?: SearchState;
  /** A size at which an earlier run died loading and that was retried: a second death counts. */
  diedLoading?: number;
}

/** What the engine knows about the run that left a crash marker. */
export interface CrashEvidence {
  /** Context lengths of this model's instances that dead runs of this home left loaded. */
  orphans: readonly number[];
  /** The machine's boot now (see `boot_time.ts`), or undefined when unknown. */
  bootTime: BootMark | undefined;
  /**
   * The model's attempt log, which must prove a saved search's sizes before it is resumed
   * ({@link unprovenSize}); undefined: not checked.
   */
  attempts?: readonly AttemptLogEntry[] | undefined;
}

/** What a crash marker is taken to mean, and why. */
export interface CrashVerdict {
  /** `crashed`: the size counts as not loadable; `retry`: the load is made again. */
  verdict: "crashed" | "retry";
  reason: string;
}

/** Where a test starts. */
export interface ResumePoint {
  /** The state the search starts from. */
  state: SearchState;
  /** Whether that is a saved search of an earlier run. */
  resumed: boolean;
  /** The haystack seed to go on with, when resuming a search that saved one. */
  seed: number | undefined;
  /** What was made of a crash marker, when the saved search had one. */
  crash?: CrashVerdict & { context: number };
  /** A size whose load was retried after a death, carried on so a second death counts. */
  diedLoading?: number;
}

/**
 * What a crash marker at `context` means. The marker exists so that a load that froze the
 * machine is not retried blindly; but a run also dies for reasons that are not the load (a
 * SIGKILL, a closed terminal, a power cut of the process alone). The load counts as crashed when
 * the machine restarted since the marker was written (by its boot id or uptime, never by the wall
 * clock, which NTP or a VM resume can step: `boot_time.ts`), or when the run died at this size
 * once before. Otherwise it is retried: its instance is still loaded (it loaded), the machine did
 * not restart, or that cannot be told (an older version's marker, a system that says nothing):
 * in doubt the size is unknown, to be probed again, never failed.
 */
export function judgeCrash(
  saved: SavedSearch,
  context: number,
  evidence: CrashEvidence,
): CrashVerdict {
  if (evidence.orphans.some((size) => size >= context)) {
    return { verdict: "retry", reason: "its instance was found loaded at that size" };
  }
  if (saved.diedLoading === context) {
    return { verdict: "crashed", reason: "a run died loading it at that size twice" };
  }
  const restarted = restartedSince(saved.pendingBoot, evidence.bootTime);
  if (restarted === true) return { verdict: "crashed", reason: "the machine restarted since" };
  if (restarted === false) return { verdict: "retry", reason: "the machine did not restart since" };
  return { verdict: "retry", reason: "whether the machine restarted since is unknown" };
}

/**
 * The resume point of `record` under `config`: its saved search when the last run left one
 * unfinished (after a stop, a kill or a fault) with the same configuration, also under `--force`
 * (which decides which models are tested, not whether a cut-short test starts over); otherwise a
 * new search. A saved crash marker is judged with
 * `evidence` ({@link judgeCrash}).
 */
export function resumePoint(
  record: ModelRecord,
  config: SearchConfig,
  evidence: CrashEvidence = { orphans: [], bootTime: undefined },
): ResumePoint {
  const saved = record.search as SavedSearch | undefined;
  // A search is saved only while a test is unfinished (the finished record drops it): whatever
  // the status went back to after the stop (`tested` for a cut-short retest), it resumes.
  const resumable = saved !== undefined && record.status !== "missing" &&
    sameConfig(saved.config, config);
  if (
    !resumable || saved === undefined ||
    (evidence.attempts !== undefined && unprovenSize(saved, evidence.attempts) !== null)
  ) {
    return { state: initialState(config), resumed: false, seed: undefined };
  }
  const { config: _c, seed, pendingSince: _p, pendingBoot: _b, settled, diedLoading, ...state } =
    saved;
  const point: ResumePoint = {
    state,
    resumed: true,
    seed: typeof seed === "number" ? seed : undefined,
    ...(diedLoading !== undefined ? { diedLoading } : {}),
  };
  const context = state.pendingLoad;
  if (context === undefined) return point;
  const crash = { ...judgeCrash(saved, context, evidence), context };
  if (crash.verdict === "crashed") return { ...point, crash };
  // Retry: go on from the last finished attempt, as after an interrupt.
  const before = settled ?? withoutMarker(state);
  return { ...point, state: before, crash, diedLoading: context };
}

/**
 * The first size a saved search takes as proven that its attempt log does not prove, or null.
 * The registry is a file anyone can edit (and a kill can land between saving the state and
 * logging the attempt): a search resumed with a working size 30,000 where the truth is 9,000
 * would report it with no load. The loadable size needs a load there that loaded; the working
 * size needs that, and a needle filling it that passed.
 */
export function unprovenSize(
  saved: SearchState,
  attempts: readonly AttemptLogEntry[],
): number | null {
  const loaded = (size: number) =>
    attempts.some((a) => a.action === "load" && a.askedContext === size && a.outcome === "loaded");
  // A needle's entry names the size of the instance it ran on.
  const passed = (size: number) =>
    attempts.some((a) => a.action === "needle" && a.askedContext === size && a.outcome === "pass");
  if (saved.loadOk !== null && !loaded(saved.loadOk)) return saved.loadOk;
  if (saved.workOk !== null && !(loaded(saved.workOk) && passed(saved.workOk))) {
    return saved.workOk;
  }
  return null;
}

function withoutMarker(state: SearchState): SearchState {
  const { pendingLoad: _pendingLoad, ...rest } = state;
  return rest;
}

/** What the registry stores for a search in `state` under `config` with haystack `seed`. */
export function savedSearch(
  state: SearchState,
  config: SearchConfig,
  seed: number,
  extra: Pick<SavedSearch, "pendingSince" | "settled" | "diedLoading"> & {
    pendingBoot?: BootMark | undefined;
  } = {},
): SavedSearch {
  const saved: SavedSearch = { ...state, config, seed };
  if (state.pendingLoad !== undefined) {
    if (extra.pendingSince !== undefined) saved.pendingSince = extra.pendingSince;
    if (extra.pendingBoot !== undefined) saved.pendingBoot = extra.pendingBoot;
    if (extra.settled !== undefined) saved.settled = extra.settled;
  }
  if (extra.diedLoading !== undefined) saved.diedLoading = extra.diedLoading;
  return saved;
}

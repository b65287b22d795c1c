/**
 * One model as the registry stores it, and the record shape the outside contract promises.
 *
 * A stored record holds the contract fields plus extras (metadata from LM Studio, the saved state
 * of an unfinished context search, bookkeeping for models that vanished). Only
 * {@linkcode toContractJson} decides what users and scripts see.
 *
 * @module
 */

/** Where a model stands: `missing` means the last scan did not find it in LM Studio. */
export type ModelStatus = "untested" | "testing" | "tested" | "failed" | "missing";

/** Every {@linkcode ModelStatus}, in the order `status` reports them. */
export const MODEL_STATUSES: readonly ModelStatus[] = [
  "untested",
  "testing",
  "tested",
  "failed",
  "missing",
];

/**
 * A model's status as users and scripts see it: a model LMStrix does not test (an embedding
 * model) is `skipped`, never `untested`, so that a script picking untested models never picks it.
 */
export type ShownStatus = ModelStatus | "skipped";

/** The status users see of `record` (see {@linkcode ShownStatus}); `missing` says more. */
export function shownStatus(record: Pick<ModelRecord, "type" | "status">): ShownStatus {
  return record.type === "embedding" && record.status !== "missing" ? "skipped" : record.status;
}

/** How much smaller the working context is than the declared one, in percent (one decimal). */
export function reductionOf(declared: number, working: number | null): number | null {
  if (working === null || declared <= 0) return null;
  return Math.round((1 - working / declared) * 1000) / 10;
}

/** The kinds of model LM Studio lists; embedding models are never tested. */
export type ModelType = "llm" | "embedding";

/**
 * A model record exactly as the outside contract shows it, one shape in `list --json`,
 * `scan --json`, `show --json` and the library, with LM Studio's display name beside it.
 */
export interface ContractModelRecord {
  /** The LM Studio model key. */
  id: string;
  /** LLM or embedding model. */
  type: ModelType;
  /** The model's path as LM Studio reports it. */
  path: string;
  /** Size on disk. */
  sizeBytes: number;
  /** Architecture as LM Studio reports it ("" when unknown). */
  architecture: string;
  /** The context length the model declares (`maxContextLength`). */
  declaredContext: number;
  /** Largest context LM Studio loads and reports back, or null until measured. */
  loadableContext: number | null;
  /** Largest context at which the needle probe passes, or null until measured. */
  workingContext: number | null;
  /** How much smaller the working context is than the declared one, in percent, or null. */
  reductionPercent: number | null;
  /** Where the model stands. */
  status: ShownStatus;
  /** When the last test finished (ISO 8601), or null. */
  testedAt: string | null;
  /** Why the last test failed, or null. */
  error: string | null;
  /** LM Studio's display name, or null when it gives none. */
  displayName: string | null;
}

/**
 * What the last test measured of a model's costs, and the plan it chose from them (the search
 * learns them as it goes: LM Studio's refusals cost a fraction of a second or a whole load, and
 * the prompt cache works for some models and not others).
 */
export interface ModelCosts {
  /** Mean seconds of a load that succeeded, or null when none was timed. */
  loadSeconds: number | null;
  /** Mean seconds of a refused load, or null when none was timed. */
  refusalSeconds: number | null;
  /** Mean seconds of a check (a load stopped as it started), or null when none was timed. */
  checkSeconds?: number | null;
  /** Prompt tokens per second at the working size (longest passing cold prompt), or null. */
  prefillTokensPerSec: number | null;
  /** The prompt length that speed was measured at, or null. */
  prefillMeasuredAt: number | null;
  /** Whether a prompt extending the previous one paid only for its new tokens; null: not seen. */
  promptCache: boolean | null;
  /**
   * The prefill curve fitted to the test's own timings (`src/search/prefill_curve.ts`): seconds
   * per token at the start, the depth at which that doubles, whether that depth was measured,
   * the fixed seconds per prediction, the timings it rests on; null when none was timed.
   */
  prefillCurve?: {
    secondsPerToken: number;
    doublingTokens: number;
    doublingMeasured: boolean;
    overheadSeconds: number;
    samples: number;
  } | null;
  /** The plan chosen from these, one sentence. */
  plan: string;
}

/** A model as stored in `models.json`: the contract fields, then extras. */
export interface ModelRecord
  extends Omit<ContractModelRecord, "type" | "reductionPercent" | "status" | "displayName"> {
  /** Where the model stands, as stored. */
  status: ModelStatus;
  /** Whether LM Studio lists it as an LLM or an embedding model. */
  type: ModelType;
  /** LM Studio's display name. */
  displayName?: string;
  /** File format, e.g. "gguf" or "safetensors". */
  format?: string;
  /** Quantization, e.g. "Q4_K_M". */
  quantization?: string;
  /** Parameter count as LM Studio writes it, e.g. "7B". */
  paramsString?: string;
  /** The context search's saved state; opaque to the registry. */
  search?: unknown;
  /**
   * Set when the last test's `--max-context` stopped it from loading larger: the loadable (and
   * maybe the working) context is then at least this, not exactly this.
   */
  cappedAt?: number;
  /** The precision (tokens) of the last test. */
  precision?: number;
  /** What the last test measured of the model's costs, and its plan. */
  costs?: ModelCosts;
  /** When a scan first found the model gone (ISO 8601); absent or null while it is present. */
  missingSince?: string | null;
  /** The status the model had before it went missing, restored when it comes back. */
  statusBeforeMissing?: Exclude<ModelStatus, "missing">;
  /**
   * Set while LM Studio lists the model with impossible numbers (a negative size, a context
   * length of 0 or 1e308): what is wrong. The model is `failed` with this as its error.
   */
  listingProblem?: string;
  /**
   * Results of an earlier test of another file: a scan found the model's file changed (e.g.
   * Q4_K_M -> Q5_K_M), so the model is `untested` again and these are shown as stale.
   */
  stale?: StaleResults;
  /**
   * Set when a forced run (`test --force`) chose the model, cleared when its test ends: a rerun
   * of the forced run that was cut short tests only the models still marked (ISO 8601 start).
   */
  retestPending?: string;
}

/** Results a record had before its file changed. */
export interface StaleResults {
  /** The status the results had (`tested` or `failed`). */
  status: Exclude<ModelStatus, "missing">;
  /** The loadable context measured then. */
  loadableContext: number | null;
  /** The working context measured then. */
  workingContext: number | null;
  /** When they were measured. */
  testedAt: string | null;
  /** When a scan found the file changed (ISO 8601). */
  since: string;
}

/** A model as a scan of LM Studio reports it: the metadata the registry refreshes. */
export interface ScannedModel {
  /** The LM Studio model key. */
  id: string;
  /** The model's path as LM Studio reports it. */
  path: string;
  /** Size on disk. */
  sizeBytes: number;
  /** Architecture ("" when LM Studio does not say). */
  architecture: string;
  /** The context length the model declares. */
  declaredContext: number;
  /** LLM or embedding model. */
  type: ModelType;
  /** LM Studio's display name. */
  displayName?: string;
  /** File format. */
  format?: string;
  /** Quantization. */
  quantization?: string;
  /** Parameter count as LM Studio writes it. */
  paramsString?: string;
}

/** The contract's keys of a model record, in the contract's order, and the display name. */
export function toContractJson(record: ModelRecord): ContractModelRecord {
  return {
    id: record.id,
    type: record.type,
    path: record.path,
    sizeBytes: record.sizeBytes,
    architecture: record.architecture,
    declaredContext: record.declaredContext,
    loadableContext: record.loadableContext,
    workingContext: record.workingContext,
    reductionPercent: reductionOf(record.declaredContext, record.workingContext),
    status: shownStatus(record),
    testedAt: record.testedAt,
    error: record.error,
    displayName: record.displayName ?? null,
  };
}

/** A fresh, untested record for a model a scan found for the first time. */
export function newModelRecord(scanned: ScannedModel): ModelRecord {
  return applyScannedMetadata({
    id: scanned.id,
    path: scanned.path,
    sizeBytes: scanned.sizeBytes,
    architecture: scanned.architecture,
    declaredContext: scanned.declaredContext,
    loadableContext: null,
    workingContext: null,
    status: "untested",
    testedAt: null,
    error: null,
    type: scanned.type,
  }, scanned);
}

/**
 * Copies the scan's metadata onto `record` (in place) and returns it. Optional metadata the scan
 * no longer reports is removed, so the record always shows what LM Studio says now.
 */
export function applyScannedMetadata(record: ModelRecord, scanned: ScannedModel): ModelRecord {
  record.path = scanned.path;
  record.sizeBytes = scanned.sizeBytes;
  record.architecture = scanned.architecture;
  record.declaredContext = scanned.declaredContext;
  record.type = scanned.type;
  for (const key of OPTIONAL_METADATA) {
    const value = scanned[key];
    if (value === undefined) delete record[key];
    else record[key] = value;
  }
  return record;
}

const OPTIONAL_METADATA = ["displayName", "format", "quantization", "paramsString"] as const;

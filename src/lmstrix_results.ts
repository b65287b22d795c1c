/**
 * What the façade's reading and scanning methods return (`LMStrix`'s `scan`, `status`
 * and `history`).
 *
 * @module
 */

import type { AttemptLogEntry } from "./registry/attempt_log.ts";
import type { LockHolder } from "./registry/lock.ts";
import type { ContractModelRecord, ModelRecord } from "./registry/model_record.ts";
import type { StatusCounts } from "./registry/registry.ts";
import type { ScanMerge } from "./registry/scan_merge.ts";

/** `scan`'s result. */
export interface ScanResult extends ScanMerge {
  models: ContractModelRecord[];
  server: string;
}

/** `status`'s result, as in `status --json`. */
export interface StatusReport extends StatusCounts {
  lock: LockHolder | null;
  registry: string;
}

/** A model's stored record with its attempt log. */
export interface ModelHistory {
  record: ModelRecord;
  /** Every attempt in the model's log, oldest first. */
  attempts: AttemptLogEntry[];
  /** The log file. */
  logFile: string;
}

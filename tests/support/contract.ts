/**
 * The key lists of the outside contract's JSON (/work/shared/contract.md, "JSON output"), in the
 * contract's order, for the tests that check the CLI's and the library's documents against it.
 *
 * @module
 */

/**
 * The keys of a model record (`list --json`, `scan --json`, `show --json`), in order: the
 * contract's, then LM Studio's display name, which every one of them shows too.
 */
export const RECORD_KEYS: readonly string[] = [
  "id",
  "type",
  "path",
  "sizeBytes",
  "architecture",
  "declaredContext",
  "loadableContext",
  "workingContext",
  "reductionPercent",
  "status",
  "testedAt",
  "error",
  "displayName",
];

/** The values a model record's `status` may take. */
export const RECORD_STATUSES: readonly string[] = [
  "untested",
  "testing",
  "tested",
  "failed",
  "missing",
  "skipped",
];

/** The keys of one entry of `results` in `test --json`, in order. */
export const RESULT_KEYS: readonly string[] = [
  "id",
  "declaredContext",
  "loadableContext",
  "workingContext",
  "reductionPercent",
  "status",
  "loads",
  "promptTokens",
  "error",
  "kept",
];

/** The keys of the `summary` of `test --json`, in order. */
export const SUMMARY_KEYS: readonly string[] = ["tested", "failed", "kept", "skipped", "seconds"];

/** The values `stopped` of `test --json` may take. */
export const STOPPED_VALUES: readonly (string | null)[] = [
  null,
  "interrupted",
  "terminated",
  "server-lost",
];

/** The keys of the `status --json` document, in order. */
export const STATUS_KEYS: readonly string[] = [
  "total",
  "untested",
  "testing",
  "tested",
  "failed",
  "lock",
];

/**
 * LMStrix finds the real context limits of the LLMs in LM Studio: the largest context a model
 * loads at (loadable) and the largest at which it still finds a needle in a prompt that fills it
 * (working), and keeps them in a registry under the LM Studio home.
 *
 * ```ts
 * import { LMStrix } from "./mod.ts";
 * const lmstrix = new LMStrix();                   // discovery and the usual LM Studio home
 * await lmstrix.scan();
 * const limits = await lmstrix.testContextLimits("qwen2.5-7b-instruct");
 * console.log(limits.working);                     // e.g. 32512
 * const check = await lmstrix.checkContext("qwen2.5-7b-instruct", 32768); // one size, no search
 * console.log(check.verdict);                      // "works", "loads-but-fails", "does-not-load"
 * await lmstrix.run("qwen2.5-7b-instruct", { prompt: "Hello", onText: (t) => console.log(t) });
 * const page = await lmstrix.report();             // the report's HTML
 * ```
 *
 * @module
 */

export {
  type AttemptLogEntry,
  type CheckLoad,
  type CheckOptions,
  type CheckVerdict,
  type ContextCheck,
  type ContextLimits,
  LMStrix,
  type LMStrixOptions,
  type ModelHistory,
  PromptTooLongError,
  RunLoadError,
  type RunRequest,
  type RunResult,
  type ScanResult,
  type SkippedModel,
  type StatusReport,
  type TestEvent,
  type TestOptions,
  type TestResult,
  type TestRun,
} from "./src/lmstrix.ts";
export {
  AmbiguousModelError,
  InterruptedError,
  LmstrixError,
  LmStudioNotAnsweringError,
  LmStudioUnreachableError,
  LockHeldError,
  ModelNotFoundError,
  RegistryError,
  UsageError,
} from "./src/errors.ts";
export type {
  ContractModelRecord as ModelRecord,
  ModelStatus,
} from "./src/registry/model_record.ts";
export type { Timeouts } from "./src/lmstudio/client.ts";
export type { ApplyOptions } from "./src/apply/apply.ts";
export type { ApplyEntry } from "./src/apply/step.ts";
export type { Margin } from "./src/apply/margin.ts";

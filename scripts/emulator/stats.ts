/**
 * What the LM Studio emulator observed: the records `GET /__emulator/stats` reports, and the
 * one-shot faults a test can arm.
 *
 * @module
 */

import type { PromptKind } from "./answers.ts";

/** One load attempt, as `GET /__emulator/stats` reports it. */
export interface LoadRecord {
  /** Model key asked for (as sent). */
  modelKey: string;
  /** Identifier of the instance (asked or assigned); null when the load never got that far. */
  identifier: string | null;
  /** Context length asked for; null when the client sent none. */
  askedContext: number | null;
  /** Context length actually loaded; null when the load failed. */
  loadedContext: number | null;
  /** Whether the model ended up loaded. */
  ok: boolean;
  /** Why it failed (error title, or `"cancelled"`, `"fault: drop"`, `"fault: hang"`). */
  error: string | null;
  /** Virtual time the attempt took, ms. */
  virtualMs: number;
}

/** One prediction, as `GET /__emulator/stats` reports it. */
export interface PredictionRecord {
  /** Model key of the instance. */
  modelKey: string;
  /** Identifier of the instance. */
  identifier: string;
  /** Context length the instance is loaded with. */
  loadedContext: number;
  /** Tokens in the prompt. */
  promptTokens: number;
  /** Prompt tokens actually processed (the rest came from the prompt cache). */
  prefilledTokens: number;
  /** Whether the answer passes (needle/sanity); null for other prompts or unfinished calls. */
  correct: boolean | null;
  /** Kind of prompt. */
  kind: PromptKind;
  /** Virtual time the prediction took, ms. */
  virtualMs: number;
  /** Tokens generated. */
  predictedTokens: number;
  /** Stop reason sent to the client, or null when the call failed or never finished. */
  stopReason: string | null;
  /** Error title sent to the client, or a fault name; null on success. */
  error: string | null;
  /** The sampling temperature the client asked for (`llm.prediction.temperature`), if any. */
  temperature?: number;
}

/** One loaded instance, as `GET /__emulator/stats` reports it. */
export interface LoadedRecord {
  /** Instance identifier. */
  identifier: string;
  /** Model key. */
  modelKey: string;
  /** Context length it is loaded with. */
  contextLength: number;
}

/** Everything the emulator observed since start or reset. */
export interface EmulatorStats {
  /** Virtual milliseconds elapsed. */
  virtualMs: number;
  /** Load attempts, in order. */
  loads: LoadRecord[];
  /** Predictions, in order. */
  predictions: PredictionRecord[];
  /** Currently loaded instances. */
  loaded: LoadedRecord[];
  /** Successful unloads. */
  unloads: number;
  /** `countTokens` and `tokenize` calls. */
  tokenCounts: number;
}

/** One-shot faults: each applies to the next matching call of any model, then clears. */
export interface OneShotFaults {
  /** Drop the connection on the next load. */
  dropNextLoad?: boolean;
  /** Drop the connection on the next prediction. */
  dropNextPredict?: boolean;
  /** Never answer the next load. */
  hangNextLoad?: boolean;
  /** Never answer the next prediction. */
  hangNextPredict?: boolean;
  /** Never answer the next `countTokens`. */
  hangNextCountTokens?: boolean;
  /**
   * Send the next model list with one entry the SDK's schema rejects (a size in words): the SDK
   * then drops the whole reply with only a logged warning, as it does with a real LM Studio
   * whose list holds one odd entry.
   */
  malformNextListing?: boolean;
  /**
   * Stream the next prediction's answer without end, whatever its `maxPredictedTokens`, until
   * the client cancels it (a server that does not enforce the limit).
   */
  endlessNextPredict?: boolean;
}

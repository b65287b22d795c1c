/**
 * The LM Studio adapter: the only module that imports `@lmstudio/sdk`.
 *
 * It turns the SDK's open-ended promises into typed results with a deadline on every call, keeps
 * the SDK quiet, classifies failures, and marks every instance it loads with an identifier that
 * says it is LMStrix's. The SDK is imported lazily, so commands that only read the registry do
 * not pay for loading it.
 */

import type { LLM, LMStudioClient } from "@lmstudio/sdk";
import { LmStudioReplyUnreadableError } from "../errors.ts";
import { isLoadRefusal, LmStudioCallError } from "./failures.ts";
import { Link, SdkWarnings } from "./link.ts";
import { collectPrediction, predictionDeadlineMs } from "./prediction.ts";

/** Every instance LMStrix loads has an identifier starting with this. */
export const INSTANCE_PREFIX = "lmstrix-";

/** A model as LM Studio lists it among the downloaded ones. */
export interface ModelListing {
  id: string;
  type: "llm" | "embedding";
  path: string;
  displayName: string;
  format: string;
  sizeBytes: number;
  architecture: string;
  declaredContext: number;
  quantization?: string;
  paramsString?: string;
}

/** A model instance loaded on the server. */
export interface LoadedInstance {
  identifier: string;
  modelKey: string;
  contextLength: number;
}

/** Deadlines, in milliseconds; predictions get more time for longer prompts. */
export interface Timeouts {
  /** Listing, token counting, unloading and other small calls. */
  rpcMs: number;
  /** One model load. */
  loadMs: number;
  /** A prediction's fixed part. */
  predictBaseMs: number;
  /** A prediction's extra allowance per prompt token. */
  predictPerTokenMs: number;
}

/** Defaults sized for a slow laptop: a 128k prompt may take twenty minutes to prefill. */
export const DEFAULT_TIMEOUTS: Timeouts = {
  rpcMs: 60_000,
  loadMs: 10 * 60_000,
  predictBaseMs: 2 * 60_000,
  predictPerTokenMs: 15,
};

/**
 * Deadlines from one base deadline (`--timeout`, `LMSTRIX_TIMEOUT`): every call gets `seconds`,
 * and predictions get the default allowance per prompt token on top.
 */
export function timeoutsFromSeconds(seconds: number): Timeouts {
  const ms = Math.round(seconds * 1000);
  return {
    rpcMs: ms,
    loadMs: ms,
    predictBaseMs: ms,
    predictPerTokenMs: DEFAULT_TIMEOUTS.predictPerTokenMs,
  };
}

/**
 * The result of asking LM Studio to load a model. A refusal is `early` when it came before any
 * load progress (the guardrail's way: quick), late when the load was under way (the engine's).
 */
export type LoadResult =
  | { kind: "loaded"; model: LoadedModel; actual: number }
  | { kind: "refused"; message: string; early: boolean };

/**
 * The result of a check ({@link LmStudio.check}): LM Studio started loading at that size (and
 * was stopped; nothing stays loaded), or refused before it started.
 */
export type CheckResult =
  | {
    kind: "started";
    /** LM Studio loaded it all the same (the cancel came too late or was ignored): unloaded. */
    completed: boolean;
  }
  | { kind: "refused"; message: string };

/** What a completion returned. */
export interface Completion {
  text: string;
  /** Prompt tokens as the server counted them, when it says. */
  promptTokens: number | undefined;
  /** The server's own measure of what the prompt cost (`stats.timeToFirstTokenSec`), if sent. */
  timeToFirstTokenSec?: number | undefined;
  /** LM Studio's statistics of the prediction, as it sent them (`stopReason`, speeds, counts). */
  stats?: Readonly<Record<string, unknown>>;
}

/** Options of {@link LoadedModel.complete}. */
export interface CompleteOptions {
  /** At most this many new tokens; `false`: until the model stops or the context is full. */
  maxTokens: number | false;
  /** The prompt's length, for the deadline. */
  promptTokens: number;
  signal?: AbortSignal;
  /** Sampling temperature (default 0, as the probes need). */
  temperature?: number;
  /** Told each fragment of the answer as it arrives (streaming). */
  onText?: (text: string) => void;
  /** The prediction's deadline in ms, instead of the one made from the prompt's length. */
  deadlineMs?: number;
}

/** A loaded instance LMStrix can use. */
export interface LoadedModel {
  readonly identifier: string;
  readonly modelKey: string;
  /** The context length the server reports for this instance. */
  readonly contextLength: number;
  /** Counts tokens with the model's own tokenizer; `signal` aborts the call (interrupts). */
  countTokens(text: string, signal?: AbortSignal): Promise<number>;
  /** Raw completion, at temperature 0 unless told otherwise. */
  complete(prompt: string, options: CompleteOptions): Promise<Completion>;
  /** Unloads this instance. */
  unload(): Promise<void>;
}

/** The adapter's surface. */
export interface LmStudio {
  readonly baseUrl: string;
  listModels(): Promise<ModelListing[]>;
  listLoaded(): Promise<LoadedInstance[]>;
  load(
    modelKey: string,
    contextLength: number,
    options: { identifier: string; signal?: AbortSignal },
  ): Promise<LoadResult>;
  /**
   * Asks for a load and cancels it at its first progress report, i.e. once LM Studio's guardrail
   * let it start: what a load at that size would meet from the guardrail, for the price of a
   * refusal. Leaves nothing of `identifier` loaded. Fails like {@link LmStudio.load} does.
   */
  check(
    modelKey: string,
    contextLength: number,
    options: { identifier: string; signal?: AbortSignal },
  ): Promise<CheckResult>;
  unload(identifier: string): Promise<void>;
  close(): Promise<void>;
}

/** Options for {@link connectLmStudio}. */
export interface ConnectOptions {
  timeouts?: Partial<Timeouts>;
}

/**
 * Creates the adapter for `baseUrl` (a `ws://host:port` address, already discovered). Nothing
 * is sent until the first call; a refused connection surfaces as an `"unreachable"` failure.
 */
export async function connectLmStudio(
  baseUrl: string,
  options: ConnectOptions = {},
): Promise<LmStudio> {
  // Plain-text errors: the SDK otherwise draws boxes with colour codes into error messages.
  if (Deno.env.get("LMS_NO_FANCY_ERRORS") === undefined) Deno.env.set("LMS_NO_FANCY_ERRORS", "1");
  const sdk = await import("@lmstudio/sdk");
  const warnings = new SdkWarnings();
  const client = new sdk.LMStudioClient({ baseUrl, logger: warnings.logger });
  return new SdkLmStudio(client, baseUrl, { ...DEFAULT_TIMEOUTS, ...options.timeouts }, warnings);
}

/** How long closing the connection may take before LMStrix moves on. */
const CLOSE_MS = 1_000;

class SdkLmStudio implements LmStudio {
  readonly #client: LMStudioClient;
  readonly #timeouts: Timeouts;
  readonly #link: Link;
  readonly #warnings: SdkWarnings;
  readonly baseUrl: string;

  constructor(client: LMStudioClient, baseUrl: string, timeouts: Timeouts, warnings: SdkWarnings) {
    this.#client = client;
    this.baseUrl = baseUrl;
    this.#link = new Link(baseUrl);
    this.#timeouts = timeouts;
    this.#warnings = warnings;
  }

  /** The model list; a list the SDK drops as unreadable fails at once, naming the bad entry. */
  async listModels(): Promise<ModelListing[]> {
    const endpoint = "listDownloadedModels";
    const dropped = new AbortController();
    let reason = "";
    const watch = this.#warnings.watch(endpoint, (why) => {
      reason = why;
      dropped.abort();
    });
    try {
      return await this.#listModels(dropped.signal);
    } catch (error) {
      if (reason !== "") throw new LmStudioReplyUnreadableError(this.baseUrl, reason);
      throw error;
    } finally {
      watch.stop();
    }
  }

  #listModels(signal: AbortSignal): Promise<ModelListing[]> {
    return this.#link.call("listDownloadedModels", this.#timeouts.rpcMs, signal, async () => {
      const models = await this.#client.system.listDownloadedModels();
      return models.map((m): ModelListing => {
        const listing: ModelListing = {
          id: m.modelKey,
          type: m.type,
          path: m.path,
          displayName: m.displayName,
          format: m.format,
          sizeBytes: m.sizeBytes,
          architecture: m.architecture ?? "unknown",
          declaredContext: m.type === "llm" ? m.maxContextLength : m.maxContextLength ?? 0,
        };
        if (m.quantization?.name) listing.quantization = m.quantization.name;
        if (m.paramsString) listing.paramsString = m.paramsString;
        return listing;
      });
    });
  }

  listLoaded(): Promise<LoadedInstance[]> {
    return this.#link.call("listLoaded", this.#timeouts.rpcMs, undefined, async () => {
      const loaded = await this.#client.llm.listLoaded();
      const infos = await Promise.all(loaded.map((model) => model.getModelInfo()));
      return infos.map((info) => ({
        identifier: info.identifier,
        modelKey: info.modelKey,
        contextLength: info.contextLength,
      }));
    });
  }

  async load(
    modelKey: string,
    contextLength: number,
    options: { identifier: string; signal?: AbortSignal },
  ): Promise<LoadResult> {
    let progressed = false;
    let model: LLM;
    try {
      model = await this.#startLoad(modelKey, contextLength, options, () => progressed = true);
    } catch (error) {
      // Whatever LM Studio says, a failed load is "not at this size" unless the failure is the
      // connection's, the clock's, an unknown model or an interrupt (failures.ts).
      if (error instanceof LmStudioCallError && isLoadRefusal(error.kind)) {
        return { kind: "refused", message: error.message, early: !progressed };
      }
      throw error;
    }
    // The load config is the truth: a fitted load reports less than was asked.
    const actual = await this.#link.call(
      "getContextLength",
      this.#timeouts.rpcMs,
      options.signal,
      () => model.getContextLength(),
    );
    return {
      kind: "loaded",
      model: new SdkLoadedModel(
        model,
        options.identifier,
        modelKey,
        actual,
        this.#timeouts,
        this.#link,
      ),
      actual,
    };
  }

  /**
   * Asks LM Studio for a load under the load deadline; `progressed` is told of the first load
   * progress (above 0: the load is under way), and `cancel`, when given, aborts it too.
   */
  #startLoad(
    modelKey: string,
    contextLength: number,
    options: { identifier: string; signal?: AbortSignal },
    progressed: () => void,
    cancel?: AbortSignal,
  ): Promise<LLM> {
    return this.#link.call(
      "load",
      this.#timeouts.loadMs,
      options.signal,
      (signal) =>
        this.#client.llm.load(modelKey, {
          identifier: options.identifier,
          config: { contextLength },
          signal: cancel === undefined ? signal : AbortSignal.any([signal, cancel]),
          verbose: false,
          onProgress: (progress) => {
            if (progress > 0) progressed();
          },
        }),
    );
  }

  async check(
    modelKey: string,
    contextLength: number,
    options: { identifier: string; signal?: AbortSignal },
  ): Promise<CheckResult> {
    // Our own cancel, told apart from the outer signal (an interrupt) by its reason.
    const cancel = new AbortController();
    const started = new Error("the load started: cancelled by the check");
    let completed = true;
    try {
      const model = await this.#startLoad(
        modelKey,
        contextLength,
        options,
        () => cancel.abort(started),
        cancel.signal,
      );
      // Loaded before the cancel took (or with no progress reported): it started all the same.
      await this.#link.call("unload", this.#timeouts.rpcMs, undefined, () => model.unload());
    } catch (error) {
      const ours = error instanceof LmStudioCallError && error.cause === started;
      if (!ours) {
        if (error instanceof LmStudioCallError && isLoadRefusal(error.kind)) {
          return { kind: "refused", message: error.message };
        }
        throw error;
      }
      // The cancel may come too late for a load about to finish: unload what it left.
      completed = await this.#unloadIfLoaded(options.identifier);
    }
    if (options.signal?.aborted) {
      throw new LmStudioCallError("load", "aborted", '"load" was interrupted');
    }
    return { kind: "started", completed };
  }

  /** Unloads the instance `identifier` if the server holds it; says whether it did. */
  async #unloadIfLoaded(identifier: string): Promise<boolean> {
    const loaded = await this.listLoaded();
    if (!loaded.some((instance) => instance.identifier === identifier)) return false;
    await this.unload(identifier);
    return true;
  }

  unload(identifier: string): Promise<void> {
    return this.#link.call(
      "unload",
      this.#timeouts.rpcMs,
      undefined,
      () => this.#client.llm.unload(identifier),
    );
  }

  async close(): Promise<void> {
    try {
      // The SDK waits for every open channel before it lets go, and a call the server never
      // answered (a hung load, even after cancel) never closes: give up on it quickly.
      await this.#link.call(
        "close",
        CLOSE_MS,
        undefined,
        () => this.#client[Symbol.asyncDispose](),
      );
    } catch {
      // Closing is best effort: the process is about to end anyway.
    }
  }
}

class SdkLoadedModel implements LoadedModel {
  readonly #model: LLM;
  readonly #timeouts: Timeouts;
  readonly #link: Link;
  readonly identifier: string;
  readonly modelKey: string;
  readonly contextLength: number;

  constructor(
    model: LLM,
    identifier: string,
    modelKey: string,
    contextLength: number,
    timeouts: Timeouts,
    link: Link,
  ) {
    this.#link = link;
    this.#model = model;
    this.identifier = identifier;
    this.modelKey = modelKey;
    this.contextLength = contextLength;
    this.#timeouts = timeouts;
  }

  countTokens(text: string, signal?: AbortSignal): Promise<number> {
    return this.#link.call(
      "countTokens",
      this.#timeouts.rpcMs,
      signal,
      () => this.#model.countTokens(text),
    );
  }

  complete(prompt: string, options: CompleteOptions): Promise<Completion> {
    const ms = options.deadlineMs ?? predictionDeadlineMs(this.#timeouts, options.promptTokens);
    return this.#link.call("complete", ms, options.signal, (signal) =>
      collectPrediction(
        (stop) =>
          this.#model.complete(prompt, {
            maxTokens: options.maxTokens,
            temperature: options.temperature ?? 0,
            contextOverflowPolicy: "stopAtLimit",
            signal: stop,
          }),
        signal,
        options,
      ));
  }

  unload(): Promise<void> {
    return this.#link.call("unload", this.#timeouts.rpcMs, undefined, () => this.#model.unload());
  }
}

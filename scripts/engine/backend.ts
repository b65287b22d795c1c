/**
 * The real engine's back end of the shared LM Studio protocol layer (`scripts/protocol/`):
 * loads create real llama.cpp contexts of the asked size, predictions are real greedy
 * completions, token counts come from the model's own tokenizer. llama.cpp runs in a Node worker
 * (`worker.mjs`, see there why).
 *
 * Memory: with the guardrail off and a budget, the worker's address space is capped at its idle
 * size plus the budget, so a context too large fails inside llama.cpp for real (LM Studio with
 * its guardrails off; llama.cpp's own failure lines carried into the error). With the guardrail
 * on, a load whose estimate (node-llama-cpp's, from the file and the context size) does not fit
 * the budget left by what is loaded is refused at once, before any progress, with LM Studio's
 * guardrail text.
 *
 * @module
 */

import { type EngineModel, modelInfo } from "./catalogue.ts";
import { type EngineWorker, WorkerError } from "./worker_client.ts";
import {
  type ChannelState,
  type Connection,
  endPrediction,
  historyText,
  type ProtocolBackend,
  send,
  sendFragments,
  sendOnChannel,
} from "../protocol/frames.ts";
import {
  collapseStack,
  isRecord,
  type Json,
  type KvField,
  LmsError,
  referencedInstance,
  stackValue,
} from "../protocol/wire.ts";

/** How the server treats a load the memory may not hold. */
export type Guardrail = "on" | "off";

/** One loaded instance: a llama.cpp context in the worker. */
export interface LoadedInstance {
  identifier: string;
  instanceReference: string;
  model: EngineModel;
  contextLength: number;
  contextId: number;
  /** The engine's estimate of this context's memory (bytes). */
  contextBytes: number;
}

/** What the server observed (for the sweep, the tests and the bench). */
export interface EngineStats {
  loads: Array<{
    modelKey: string;
    askedContext: number;
    ok: boolean;
    error: string | null;
    ms: number;
    stage: "guardrail" | "engine" | "loaded" | "cancelled";
  }>;
  predictions: Array<{
    modelKey: string;
    promptTokens: number;
    evaluatedTokens: number;
    firstTokenMs: number;
    totalMs: number;
  }>;
}

/** A completion, or the prompt did not fit the context. */
export type Completion =
  | { overflow: true; promptTokens: number }
  | {
    overflow: false;
    text: string;
    /** The generated tokens' texts. */
    pieces: string[];
    /** Prompt tokens (BOS not counted). */
    promptTokens: number;
    /** Tokens evaluated: the prompt less the prefix reused from the cache. */
    evaluatedTokens: number;
    firstTokenMs: number;
    totalMs: number;
    stopReason: string;
  };

/** The engine as a protocol back end. */
export class EngineBackend implements ProtocolBackend {
  readonly name = "engine";
  readonly connections = new Set<Connection>();
  readonly instances = new Map<string, LoadedInstance>();
  readonly stats: EngineStats = { loads: [], predictions: [] };
  readonly #models: EngineModel[];
  #worker: EngineWorker;
  readonly #restart: () => Promise<EngineWorker>;
  /** Times the engine died and was started again. */
  crashes = 0;
  readonly #guardrail: Guardrail;
  readonly #budget: number | null;
  /** The engine's estimate of each loaded model file's memory (bytes). */
  readonly #modelBytes = new Map<string, number>();
  #nextReference = 1;

  constructor(
    models: EngineModel[],
    worker: EngineWorker,
    options: {
      guardrail: Guardrail;
      budget: number | null;
      /** Starts a new worker when one dies (as LM Studio starts its engine again). */
      restart: () => Promise<EngineWorker>;
    },
  ) {
    this.#models = models;
    this.#worker = worker;
    this.#restart = options.restart;
    this.#guardrail = options.guardrail;
    this.#budget = options.budget;
  }

  /** The worker in use (a new one after a crash). */
  get worker(): EngineWorker {
    return this.#worker;
  }

  /**
   * After the worker died: what it held is gone, a new one takes its place, and the caller gets
   * LM Studio's words for a dead engine with llama.cpp's last lines.
   */
  async #afterCrash(error: WorkerError, title: string): Promise<LmsError> {
    this.crashes++;
    this.instances.clear();
    this.#modelBytes.clear();
    this.#worker = await this.#restart();
    const cause = error.log.join("; ");
    return new LmsError(`${title} (Exit code: ${error.exit})`, cause === "" ? {} : { cause });
  }

  /** The models served. */
  get models(): readonly EngineModel[] {
    return this.#models;
  }

  /** The model with this key or path. */
  find(key: string): EngineModel | undefined {
    return this.#models.find((m) => m.modelKey === key) ??
      this.#models.find((m) => m.path === key) ??
      this.#models.find((m) => m.modelKey.toLowerCase() === key.toLowerCase());
  }

  #notFound(key: string): LmsError {
    return new LmsError(`Cannot find a model with path "${key}"`, {
      cause: `No model with key or path "${key}" is downloaded.`,
      displayData: {
        code: "generic.pathNotFound",
        path: key,
        availablePathsSample: this.#models.slice(0, 10).map((m) => m.modelKey),
        totalModels: this.#models.length,
      },
    });
  }

  #instanceInfo(instance: LoadedInstance): Json {
    return {
      ...modelInfo(instance.model),
      identifier: instance.identifier,
      instanceReference: instance.instanceReference,
      contextLength: instance.contextLength,
    };
  }

  #loadConfig(instance: LoadedInstance): { fields: KvField[] } {
    return {
      fields: [
        { key: "llm.load.contextLength", value: instance.contextLength },
        { key: "llm.load.seed", value: { checked: false, value: -1 } },
        { key: "llm.load.llama.acceleration.offloadRatio", value: 0 },
        { key: "llm.load.llama.evalBatchSize", value: 512 },
        { key: "llm.load.llama.flashAttention", value: true },
        { key: "llm.load.llama.tryMmap", value: true },
      ],
    };
  }

  #resolve(specifier: unknown): LoadedInstance {
    const referenced = referencedInstance(this.instances.values(), specifier);
    if (referenced !== undefined) return referenced;
    const query = isRecord(specifier) && isRecord(specifier.query) ? specifier.query : {};
    for (const instance of this.instances.values()) {
      if (query.identifier !== undefined && instance.identifier !== query.identifier) continue;
      if (
        query.path !== undefined && instance.model.path !== query.path &&
        instance.model.modelKey !== query.path
      ) continue;
      return instance;
    }
    throw new LmsError("No loaded model satisfies all requirements specified in the query.", {
      displayData: {
        code: "generic.noModelMatchingQuery",
        loadedModelsSample: [...this.instances.keys()].slice(0, 10),
        totalLoadedModels: this.instances.size,
      },
    });
  }

  /** Unloads everything (the server is stopping). */
  async unloadAll(): Promise<void> {
    for (const instance of [...this.instances.values()]) await this.unload(instance);
  }

  rpc(connection: Connection, endpoint: string, param: Json): unknown {
    const namespace = connection.namespace;
    if (namespace === "system" && endpoint === "listDownloadedModels") {
      return this.#models.map(modelInfo);
    }
    if (namespace === "llm") {
      switch (endpoint) {
        case "listLoaded":
          return [...this.instances.values()].map((i) => this.#instanceInfo(i));
        case "getModelInfo":
          try {
            return this.#instanceInfo(this.#resolve(param.specifier));
          } catch (error) {
            if (param.throwIfNotFound === true) throw error;
            return undefined;
          }
        case "getLoadConfig":
          return this.#loadConfig(this.#resolve(param.specifier));
        case "unloadModel": {
          const identifier = String(param.identifier);
          const instance = this.instances.get(identifier);
          if (instance === undefined) {
            throw new LmsError(`Cannot find a model with identifier "${identifier}"`, {
              displayData: { code: "generic.identifierNotFound", identifier },
            });
          }
          return this.unload(instance).then(() => undefined);
        }
        case "countTokens":
        case "tokenize": {
          const instance = this.#resolve(param.specifier);
          const text = typeof param.inputString === "string" ? param.inputString : "";
          return this.#worker.request("tokenize", { path: instance.model.file, text }).then(
            ({ tokens }) => {
              const list = tokens as number[];
              return endpoint === "countTokens" ? { tokenCount: list.length } : { tokens: list };
            },
          );
        }
        case "applyPromptTemplate":
          this.#resolve(param.specifier);
          return { formatted: historyText(param.history) };
      }
    }
    if (namespace === "embedding" && endpoint === "listLoaded") return [];
    throw new LmsError(`Unknown RPC endpoint "${namespace}/${endpoint}"`, {
      cause: "The LM Studio engine does not implement this endpoint.",
    });
  }

  channel(
    connection: Connection,
    channelId: number,
    channel: ChannelState,
    endpoint: string,
    creation: Json,
  ): Promise<void> | null {
    if (connection.namespace !== "llm") return null;
    if (endpoint === "loadModel" || endpoint === "getOrLoad") {
      return this.#load(connection, channelId, channel, creation, endpoint);
    }
    if (endpoint === "predict") return this.#predict(connection, channelId, channel, creation);
    return null;
  }

  /** Bytes the guardrail counts as taken: loaded models and contexts. */
  #inUse(): number {
    let bytes = 0;
    for (const value of this.#modelBytes.values()) bytes += value;
    for (const instance of this.instances.values()) bytes += instance.contextBytes;
    return bytes;
  }

  /**
   * Loads `model` with a context of `size` tokens: refused at once by the guardrail (on, with a
   * budget) when the engine's estimate does not fit, else a real llama.cpp context, whose
   * failure carries llama.cpp's log lines. `progress` hears 0.05 once the guardrail let it
   * start, as LM Studio reports progress only then; a cancel (`signal`) after that unloads what
   * was made.
   */
  async load(
    model: EngineModel,
    size: number,
    options: { identifier?: string; signal?: AbortSignal; progress?: (p: number) => void } = {},
  ): Promise<LoadedInstance> {
    const started = performance.now();
    const { identifier } = options;
    const record: EngineStats["loads"][number] = {
      modelKey: model.modelKey,
      askedContext: size,
      ok: false,
      error: null,
      ms: 0,
      stage: "guardrail",
    };
    this.stats.loads.push(record);
    const refuse = (error: LmsError, stage: typeof record.stage) => {
      record.error = error.message + (error.wire.cause ? `: ${error.wire.cause}` : "");
      record.stage = stage;
      record.ms = performance.now() - started;
      return error;
    };
    if (identifier !== undefined && this.instances.has(identifier)) {
      throw refuse(
        new LmsError(`A model with identifier "${identifier}" is already loaded`),
        "guardrail",
      );
    }
    if (size > model.gguf.declaredContext || size < 1 || !Number.isInteger(size)) {
      throw refuse(
        new LmsError("Failed to load model", {
          cause: `Requested context length (${size}) is greater than the model's maximum ` +
            `context length (${model.gguf.declaredContext}).`,
        }),
        "guardrail",
      );
    }
    const estimate = await this.#worker.request("estimate", {
      path: model.file,
      contextSize: size,
    });
    const modelBytes = this.#modelBytes.has(model.file) ? 0 : Number(estimate.modelBytes);
    const contextBytes = Number(estimate.contextBytes);
    if (this.#guardrail === "on" && this.#budget !== null) {
      const need = this.#inUse() + modelBytes + contextBytes;
      if (need > this.#budget) {
        const gb = (need / 1e9).toFixed(2);
        throw refuse(
          new LmsError(
            "Model loading was stopped due to insufficient system resources. Under the " +
              `current settings, this model requires approximately ${gb} GB of memory, and ` +
              "continuing to load it would likely overload your system and cause it to " +
              "freeze. If you believe this is a mistake, you can try to change the model " +
              "loading guardrails in the settings.",
          ),
          "guardrail",
        );
      }
    }
    options.progress?.(0.05);
    let created: Record<string, unknown>;
    try {
      created = await this.#worker.request("createContext", {
        path: model.file,
        contextSize: size,
        capped: this.#guardrail === "off",
      });
    } catch (error) {
      if (!(error instanceof WorkerError)) throw error;
      if (error.exit !== null) {
        throw refuse(await this.#afterCrash(error, "Error loading model."), "engine");
      }
      // llama.cpp's own lines say why (an allocation that failed, and where).
      const why = error.log.filter((line) => /fail|insufficient|error|unable/i.test(line));
      throw refuse(
        new LmsError("Failed to load model", {
          cause: [...why.slice(-3), error.message].join("; "),
        }),
        "engine",
      );
    }
    if (modelBytes > 0) this.#modelBytes.set(model.file, modelBytes);
    let chosen = identifier ?? model.modelKey;
    if (identifier === undefined) {
      for (let n = 2; this.instances.has(chosen); n++) chosen = `${model.modelKey}:${n}`;
    }
    const instance: LoadedInstance = {
      identifier: chosen,
      instanceReference: `engine-${this.#nextReference++}-${crypto.randomUUID().slice(0, 8)}`,
      model,
      contextLength: Number(created.contextSize),
      contextId: Number(created.contextId),
      contextBytes,
    };
    this.instances.set(chosen, instance);
    if (options.signal?.aborted === true) {
      await this.unload(instance);
      throw refuse(new LmsError("Model loading was cancelled"), "cancelled");
    }
    record.ok = true;
    record.stage = "loaded";
    record.ms = performance.now() - started;
    return instance;
  }

  /** Frees an instance's context. */
  async unload(instance: LoadedInstance): Promise<void> {
    if (this.instances.get(instance.identifier) !== instance) return;
    this.instances.delete(instance.identifier);
    await this.#worker.request("disposeContext", { contextId: instance.contextId });
  }

  /** Tokens of `text` (no BOS), by the model's own tokenizer. */
  async tokenize(model: EngineModel, text: string): Promise<number[]> {
    return (await this.#worker.request("tokenize", { path: model.file, text })).tokens as number[];
  }

  /**
   * A real completion of `prompt` (BOS first) on the instance, reusing the prefix its sequence
   * holds; `overflow` when the prompt does not fit the context.
   */
  async complete(
    instance: LoadedInstance,
    prompt: string,
    options: { maxTokens: number; temperature: number; signal?: AbortSignal },
  ): Promise<Completion> {
    const requestId = this.#worker.peekId();
    const cancel = () => this.#worker.request("cancel", { target: requestId }).catch(() => {});
    options.signal?.addEventListener("abort", cancel, { once: true });
    let result;
    try {
      result = await this.#worker.request("complete", {
        contextId: instance.contextId,
        prompt,
        maxTokens: options.maxTokens,
        temperature: options.temperature,
      });
    } catch (error) {
      if (!(error instanceof WorkerError) || error.exit === null) throw error;
      throw await this.#afterCrash(
        error,
        "The model has crashed without additional information.",
      );
    } finally {
      options.signal?.removeEventListener("abort", cancel);
    }
    if (result.overflow === true) {
      return { overflow: true, promptTokens: Number(result.promptTokens) };
    }
    const completion: Completion = {
      overflow: false,
      text: String(result.text),
      pieces: result.pieces as string[],
      promptTokens: Number(result.promptTokens),
      evaluatedTokens: Number(result.evaluatedTokens),
      firstTokenMs: Number(result.firstTokenMs),
      totalMs: Number(result.totalMs),
      stopReason: String(result.stopReason),
    };
    this.stats.predictions.push({
      modelKey: instance.model.modelKey,
      promptTokens: completion.promptTokens,
      evaluatedTokens: completion.evaluatedTokens,
      firstTokenMs: completion.firstTokenMs,
      totalMs: completion.totalMs,
    });
    return completion;
  }

  async #load(
    connection: Connection,
    channelId: number,
    channel: ChannelState,
    creation: Json,
    flavour: "loadModel" | "getOrLoad",
  ): Promise<void> {
    const key = String(flavour === "loadModel" ? creation.modelKey : creation.identifier);
    const asked = stackValue(creation.loadConfigStack, "llm.load.contextLength");
    const say = (message: Json) => sendOnChannel(connection, channelId, message);
    if (flavour === "getOrLoad") {
      const existing = [...this.instances.values()].find((i) =>
        i.identifier === key || i.model.modelKey === key
      );
      if (existing !== undefined) {
        say({ type: "alreadyLoaded", info: this.#instanceInfo(existing) });
        send(connection, { type: "channelClose", channelId });
        return;
      }
    }
    const model = this.find(key);
    if (model === undefined) throw this.#notFound(key);
    const identifier = flavour === "loadModel" && typeof creation.identifier === "string"
      ? creation.identifier
      : undefined;
    const size = typeof asked === "number" ? asked : Math.min(4096, model.gguf.declaredContext);
    if (flavour === "loadModel") say({ type: "resolved", info: modelInfo(model) });
    const progress = flavour === "loadModel" ? "progress" : "loadProgress";
    const instance = await this.load(model, size, {
      ...(identifier === undefined ? {} : { identifier }),
      signal: channel.abort.signal,
      progress: (p) => {
        if (flavour === "getOrLoad") {
          say({ type: "startLoading", identifier: key, info: modelInfo(model) });
        }
        say({ type: progress, progress: p });
      },
    });
    say({ type: progress, progress: 1 });
    say({
      type: flavour === "loadModel" ? "success" : "loadSuccess",
      info: this.#instanceInfo(instance),
    });
    send(connection, { type: "channelClose", channelId });
  }

  async #predict(
    connection: Connection,
    channelId: number,
    channel: ChannelState,
    creation: Json,
  ): Promise<void> {
    const instance = this.#resolve(creation.modelSpecifier);
    const prompt = historyText(creation.history);
    const stack = creation.predictionConfigStack;
    const maxSetting = stackValue(stack, "llm.prediction.maxPredictedTokens");
    const maxTokens = isRecord(maxSetting) && maxSetting.checked === true &&
        typeof maxSetting.value === "number"
      ? maxSetting.value
      : 1_000_000;
    const temperature = stackValue(stack, "llm.prediction.temperature");
    const result = await this.complete(instance, prompt, {
      maxTokens,
      temperature: typeof temperature === "number" ? temperature : 0,
      signal: channel.abort.signal,
    });
    if (result.overflow) {
      throw new LmsError(
        "The number of tokens to keep from the initial prompt is greater than the context " +
          "length. Try to load the model with a larger context length, or provide a shorter input",
        {
          cause: `The prompt has ${result.promptTokens} tokens; the model is loaded with a ` +
            `context length of ${instance.contextLength}.`,
        },
      );
    }
    const promptTokens = result.promptTokens;
    let pieces = result.pieces as string[];
    let stopReason = result.stopReason;
    const stops = stackValue(stack, "llm.prediction.stopStrings");
    if (Array.isArray(stops)) {
      let text = "";
      for (let i = 0; i < pieces.length; i++) {
        text += pieces[i];
        if (stops.some((s) => typeof s === "string" && s !== "" && text.includes(s))) {
          pieces = pieces.slice(0, i + 1);
          stopReason = "stopStringFound";
          break;
        }
      }
    }
    const { firstTokenMs, totalMs } = result;
    sendFragments(connection, channelId, pieces);
    const generationSec = Math.max(1e-6, (totalMs - firstTokenMs) / 1000);
    endPrediction(connection, channelId, {
      stopReason,
      tokensPerSecond: pieces.length / generationSec,
      numGpuLayers: 0,
      timeToFirstTokenSec: firstTokenMs / 1000,
      totalTimeSec: totalMs / 1000,
      promptTokensCount: promptTokens,
      predictedTokensCount: pieces.length,
      totalTokensCount: promptTokens + pieces.length,
    }, {
      modelInfo: this.#instanceInfo(instance),
      loadModelConfig: this.#loadConfig(instance),
      predictionConfig: collapseStack(stack),
    });
  }
}

/**
 * An LM Studio emulator: a server that speaks LM Studio's WebSocket protocol well enough for the
 * real `@lmstudio/sdk` (1.5.0) to list, load, count tokens, complete and unload against it, with
 * models described by profiles (see `emulator_profiles.ts`), a virtual clock, scripted faults and
 * statistics over HTTP. It does not import the SDK.
 *
 * HTTP on the same port:
 * - `GET /lmstudio-greeting` -> `{"lmstudio":true}` (how LM Studio is discovered)
 * - `GET /__emulator/stats`, `POST /__emulator/reset`, `POST /__emulator/load`,
 *   `POST /__emulator/faults`, `GET /__emulator/profiles`
 * - WebSocket upgrade on `/llm`, `/embedding`, `/system`, `/diagnostics`, `/files`,
 *   `/repository`, `/plugins` (one per SDK namespace).
 *
 * CLI: `deno task emulator [--port N] [--profiles FILE]` prints
 * `LM Studio emulator listening on ws://127.0.0.1:N` and runs until SIGINT/SIGTERM.
 *
 * Behaviour choices where LM Studio's own is not pinned down: a load asking for more than the
 * declared context fails; a dropped load loads nothing; a hung call ignores cancel; models loaded
 * by a client stay loaded when it disconnects; predictions on one instance are not queued.
 *
 * @module
 */

import {
  cachedPrefixTokens,
  countTokens,
  DEMO_FLEET_URL,
  emulatedAnswer,
  estimatedMemoryGb,
  generateMs,
  loadMs,
  type ModelProfile,
  prefillMs,
  type ProfileFaults,
  type PromptKind,
  quantizationBits,
  readProfilesFile,
  readPrompt,
  TIMING,
  tokenize,
  tokenPieces,
  validateProfile,
  VirtualClock,
} from "./emulator_profiles.ts";

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

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
}

/** Options of {@link startEmulator}. */
export interface EmulatorOptions {
  /** The models the emulator serves. */
  profiles: ModelProfile[];
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
}

/** A running emulator. */
export interface Emulator {
  /** The port it listens on. */
  readonly port: number;
  /** WebSocket base URL for the SDK, `ws://127.0.0.1:PORT`. */
  readonly url: string;
  /** HTTP base URL, `http://127.0.0.1:PORT`. */
  readonly httpUrl: string;
  /** A snapshot of the statistics. */
  stats(): EmulatorStats;
  /** Clears statistics, fault counters and the clock, and unloads everything. */
  reset(): void;
  /** Arms one-shot faults. */
  injectFaults(faults: OneShotFaults): void;
  /** Loads a model as if the user did it by hand (not counted in `loads`). */
  loadByHand(modelKey: string, identifier?: string, contextLength?: number): LoadedRecord;
  /** Closes every connection and stops the server. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Wire helpers
// ---------------------------------------------------------------------------------------------

/** The serialized error shape the SDK expects in `rpcError` / `channelError`. */
interface WireError {
  title: string;
  rootTitle: string;
  cause?: string;
  suggestion?: string;
  displayData?: Record<string, unknown>;
}

/** An error to send to the client as LM Studio would. */
class LmsError extends Error {
  readonly wire: WireError;
  constructor(title: string, extra: Omit<WireError, "title" | "rootTitle"> = {}) {
    super(title);
    this.wire = { title, rootTitle: title, ...extra };
  }
}

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const NAMESPACES = new Set([
  "llm",
  "embedding",
  "system",
  "diagnostics",
  "files",
  "repository",
  "plugins",
]);

interface KvField {
  key: string;
  value: unknown;
}

/** The value of `key` in a kv config stack (later layers win), or undefined. */
function stackValue(stack: unknown, key: string): unknown {
  let found: unknown = undefined;
  if (!isRecord(stack) || !Array.isArray(stack.layers)) return undefined;
  for (const layer of stack.layers) {
    if (!isRecord(layer) || !isRecord(layer.config) || !Array.isArray(layer.config.fields)) {
      continue;
    }
    for (const field of layer.config.fields) {
      if (isRecord(field) && field.key === key) found = field.value;
    }
  }
  return found;
}

/** All fields of a stack collapsed (later layers win), as a kv config. */
function collapseStack(stack: unknown): { fields: KvField[] } {
  const fields = new Map<string, unknown>();
  if (isRecord(stack) && Array.isArray(stack.layers)) {
    for (const layer of stack.layers) {
      if (!isRecord(layer) || !isRecord(layer.config) || !Array.isArray(layer.config.fields)) {
        continue;
      }
      for (const field of layer.config.fields) {
        if (isRecord(field) && typeof field.key === "string") fields.set(field.key, field.value);
      }
    }
  }
  return { fields: [...fields].map(([key, value]) => ({ key, value })) };
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

interface Instance {
  identifier: string;
  instanceReference: string;
  profile: ModelProfile;
  contextLength: number;
  /** Text the KV cache holds (last prompt plus its answer), for prompt caching. */
  cacheText: string;
}

interface FaultCounters {
  load: number;
  predict: number;
  countTokens: number;
}

interface ChannelState {
  endpoint: string;
  /** Set while the channel can still be cancelled. */
  abort: AbortController;
  /** A hung channel ignores everything. */
  hung: boolean;
}

interface Connection {
  socket: WebSocket;
  namespace: string;
  authenticated: boolean;
  channels: Map<number, ChannelState>;
}

function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Thrown inside a handler to end it without an answer (the socket was dropped or it hangs). */
class Silenced extends Error {}

class EmulatorCore {
  readonly profiles: ModelProfile[];
  readonly clock = new VirtualClock();
  readonly instances = new Map<string, Instance>();
  readonly connections = new Set<Connection>();
  loads: LoadRecord[] = [];
  predictions: PredictionRecord[] = [];
  unloads = 0;
  tokenCounts = 0;
  counters = new Map<string, FaultCounters>();
  oneShot: OneShotFaults = {};
  nextReference = 1;

  constructor(profiles: ModelProfile[]) {
    this.profiles = profiles;
  }

  stats(): EmulatorStats {
    return structuredClone({
      virtualMs: this.clock.now,
      loads: this.loads,
      predictions: this.predictions,
      loaded: [...this.instances.values()].map((instance) => this.loadedRecord(instance)),
      unloads: this.unloads,
      tokenCounts: this.tokenCounts,
    });
  }

  reset(): void {
    this.clock.reset();
    this.instances.clear();
    this.loads = [];
    this.predictions = [];
    this.unloads = 0;
    this.tokenCounts = 0;
    this.counters.clear();
    this.oneShot = {};
  }

  loadedRecord(instance: Instance): LoadedRecord {
    return {
      identifier: instance.identifier,
      modelKey: instance.profile.modelKey,
      contextLength: instance.contextLength,
    };
  }

  counter(modelKey: string): FaultCounters {
    let counter = this.counters.get(modelKey);
    if (counter === undefined) {
      counter = { load: 0, predict: 0, countTokens: 0 };
      this.counters.set(modelKey, counter);
    }
    return counter;
  }

  findProfile(key: string): ModelProfile | undefined {
    return this.profiles.find((p) => p.modelKey === key) ??
      this.profiles.find((p) => p.path === key) ??
      this.profiles.find((p) => p.modelKey.toLowerCase() === key.toLowerCase());
  }

  modelInfo(profile: ModelProfile): Json {
    const info: Json = {
      type: profile.type,
      modelKey: profile.modelKey,
      format: profile.format === "mlx" ? "safetensors" : profile.format,
      displayName: profile.displayName,
      path: profile.path,
      sizeBytes: profile.sizeBytes,
      paramsString: profile.paramsString,
      architecture: profile.architecture,
      quantization: { name: profile.quantization, bits: quantizationBits(profile.quantization) },
      maxContextLength: profile.declaredContext,
    };
    if (profile.type === "llm") {
      info.vision = profile.vision ?? false;
      info.trainedForToolUse = profile.trainedForToolUse ?? false;
    }
    return info;
  }

  instanceInfo(instance: Instance): Json {
    return {
      ...this.modelInfo(instance.profile),
      identifier: instance.identifier,
      instanceReference: instance.instanceReference,
      contextLength: instance.contextLength,
    };
  }

  loadConfig(instance: Instance): { fields: KvField[] } {
    if (instance.profile.type === "embedding") {
      return {
        fields: [
          { key: "embedding.load.contextLength", value: instance.contextLength },
          { key: "embedding.load.llama.evalBatchSize", value: 512 },
        ],
      };
    }
    const fields: KvField[] = [
      { key: "llm.load.contextLength", value: instance.contextLength },
      { key: "llm.load.seed", value: { checked: false, value: -1 } },
    ];
    if (instance.profile.format === "gguf") {
      fields.push(
        { key: "llm.load.llama.acceleration.offloadRatio", value: "max" },
        { key: "llm.load.llama.evalBatchSize", value: 512 },
        { key: "llm.load.llama.flashAttention", value: false },
        { key: "llm.load.llama.keepModelInMemory", value: true },
        { key: "llm.load.llama.tryMmap", value: true },
      );
    }
    return { fields };
  }

  defaultContext(profile: ModelProfile): number {
    return profile.type === "embedding"
      ? profile.declaredContext
      : Math.min(4096, profile.declaredContext);
  }

  notFoundError(key: string): LmsError {
    const sample = this.profiles.slice(0, 10).map((p) => p.modelKey);
    return new LmsError(`Cannot find a model with path "${key}"`, {
      cause: `No model with key or path "${key}" is downloaded.`,
      suggestion: 'Run "lms ls" to see the models you can load.',
      displayData: {
        code: "generic.pathNotFound",
        path: key,
        availablePathsSample: sample,
        totalModels: this.profiles.length,
      },
    });
  }

  /**
   * Checks a load request and returns the context that would be loaded, or throws the error LM
   * Studio would send. Shared by the WebSocket load and the by-hand load.
   */
  admitLoad(profile: ModelProfile, asked: number, identifier: string | undefined): number {
    if (identifier !== undefined && this.instances.has(identifier)) {
      throw new LmsError(`A model with identifier "${identifier}" is already loaded`, {
        suggestion: "Unload it first or pick another identifier.",
      });
    }
    if (asked > profile.declaredContext) {
      throw new LmsError("Failed to load model", {
        cause: `Requested context length (${asked}) is greater than the model's maximum context ` +
          `length (${profile.declaredContext}).`,
      });
    }
    if (profile.loadFailAbove !== undefined && asked > profile.loadFailAbove) {
      const gb = estimatedMemoryGb(profile, asked).toFixed(2);
      throw new LmsError(
        "Model loading was stopped due to insufficient system resources. Under the current " +
          `settings, this model requires approximately ${gb} GB of memory, and continuing to ` +
          "load it would likely overload your system and cause it to freeze. If you believe " +
          "this is a mistake, you can try to change the model loading guardrails in the settings.",
      );
    }
    return profile.fitAbove !== undefined && asked > profile.fitAbove ? profile.fitAbove : asked;
  }

  addInstance(profile: ModelProfile, identifier: string | undefined, context: number): Instance {
    let chosen = identifier ?? profile.modelKey;
    if (identifier === undefined) {
      for (let n = 2; this.instances.has(chosen); n++) chosen = `${profile.modelKey}:${n}`;
    }
    const instance: Instance = {
      identifier: chosen,
      instanceReference: `emu-${this.nextReference++}-${crypto.randomUUID().slice(0, 8)}`,
      profile,
      contextLength: context,
      cacheText: "",
    };
    this.instances.set(chosen, instance);
    return instance;
  }

  /** Finds the instance a specifier points at, or throws LM Studio's error. */
  resolve(specifier: unknown, domain: string): Instance {
    if (isRecord(specifier) && specifier.type === "instanceReference") {
      for (const instance of this.instances.values()) {
        if (instance.instanceReference === specifier.instanceReference) return instance;
      }
      throw new LmsError("This model has already been unloaded.", {
        displayData: { code: "generic.specificModelUnloaded" },
      });
    }
    const query = isRecord(specifier) && isRecord(specifier.query) ? specifier.query : {};
    const candidates = [...this.instances.values()].filter((instance) =>
      instance.profile.type === domain &&
      (query.identifier === undefined || instance.identifier === query.identifier) &&
      (query.path === undefined || instance.profile.path === query.path ||
        instance.profile.modelKey === query.path)
    );
    const found = candidates[0];
    if (found !== undefined) return found;
    const loaded = [...this.instances.keys()];
    throw new LmsError("No loaded model satisfies all requirements specified in the query.", {
      displayData: {
        code: "generic.noModelMatchingQuery",
        query: {
          ...(typeof query.identifier === "string" ? { identifier: query.identifier } : {}),
          ...(typeof query.path === "string" ? { path: query.path } : {}),
        },
        loadedModelsSample: loaded.slice(0, 10),
        totalLoadedModels: loaded.length,
      },
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Protocol handling
// ---------------------------------------------------------------------------------------------

function send(connection: Connection, message: Json): void {
  if (connection.socket.readyState === WebSocket.OPEN) {
    connection.socket.send(JSON.stringify(message));
  }
}

function drop(connection: Connection): never {
  try {
    connection.socket.close(4000, "emulator fault: connection dropped");
  } catch {
    // Already closing.
  }
  throw new Silenced();
}

function takeOneShot(core: EmulatorCore, key: keyof OneShotFaults): boolean {
  if (core.oneShot[key] === true) {
    delete core.oneShot[key];
    return true;
  }
  return false;
}

/**
 * Applies the fault armed for the `k`-th load or prediction of a model (scripted in its profile)
 * or for the next one (one-shot): a drop closes the connection, a hang never answers the channel;
 * `record.error` says which. A drop ends the call first, so a one-shot hang stays armed.
 */
function injectFaults(
  core: EmulatorCore,
  connection: Connection,
  channel: ChannelState,
  record: { error: string | null },
  armed: { call: "Load" | "Predict"; k: number; scripted: ProfileFaults | undefined },
): void {
  const { call, k, scripted } = armed;
  if (
    scripted?.[`dropOn${call}` as const]?.includes(k) === true ||
    takeOneShot(core, `dropNext${call}` as const)
  ) {
    record.error = "fault: drop";
    drop(connection);
  }
  if (
    scripted?.[`hangOn${call}` as const]?.includes(k) === true ||
    takeOneShot(core, `hangNext${call}` as const)
  ) {
    record.error = "fault: hang";
    channel.hung = true;
    throw new Silenced();
  }
}

function handleRpc(
  core: EmulatorCore,
  connection: Connection,
  endpoint: string,
  parameter: unknown,
): unknown {
  const namespace = connection.namespace;
  const param = isRecord(parameter) ? parameter : {};
  if (namespace === "system") {
    switch (endpoint) {
      case "listDownloadedModels":
        return core.profiles.map((profile) => core.modelInfo(profile));
      case "version":
        return { version: "0.3.30", build: 1 };
      case "getExperimentFlags":
        return [];
    }
  }
  if (namespace === "llm" || namespace === "embedding") {
    switch (endpoint) {
      case "listLoaded":
        return [...core.instances.values()]
          .filter((instance) => instance.profile.type === namespace)
          .map((instance) => core.instanceInfo(instance));
      case "getModelInfo": {
        try {
          return core.instanceInfo(core.resolve(param.specifier, namespace));
        } catch (error) {
          if (param.throwIfNotFound === true) throw error;
          return undefined;
        }
      }
      case "getLoadConfig":
        return core.loadConfig(core.resolve(param.specifier, namespace));
      case "unloadModel": {
        const identifier = String(param.identifier);
        const instance = core.instances.get(identifier);
        if (instance === undefined || instance.profile.type !== namespace) {
          const loaded = [...core.instances.keys()];
          throw new LmsError(`Cannot find a model with identifier "${identifier}"`, {
            displayData: {
              code: "generic.identifierNotFound",
              identifier,
              loadedModelsSample: loaded.slice(0, 10),
              totalLoadedModels: loaded.length,
            },
          });
        }
        core.instances.delete(identifier);
        core.unloads++;
        core.clock.advance(TIMING.unloadMs);
        return undefined;
      }
      case "countTokens":
      case "tokenize": {
        const instance = core.resolve(param.specifier, namespace);
        const text = typeof param.inputString === "string" ? param.inputString : "";
        if (endpoint === "countTokens") {
          const k = ++core.counter(instance.profile.modelKey).countTokens;
          const hang = instance.profile.faults?.hangOnCountTokens?.includes(k) === true ||
            takeOneShot(core, "hangNextCountTokens");
          if (hang) throw new Silenced();
        }
        core.tokenCounts++;
        const tokens = endpoint === "countTokens" ? countTokens(text) : tokenize(text);
        const n = typeof tokens === "number" ? tokens : tokens.length;
        core.clock.advance(n / TIMING.tokenizeTokensPerMs);
        return endpoint === "countTokens" ? { tokenCount: tokens } : { tokens };
      }
      case "applyPromptTemplate": {
        core.resolve(param.specifier, namespace);
        return { formatted: historyText(param.history) };
      }
    }
  }
  throw new LmsError(`Unknown RPC endpoint "${namespace}/${endpoint}"`, {
    cause: "The LM Studio emulator does not implement this endpoint.",
  });
}

function historyText(history: unknown): string {
  if (!isRecord(history) || !Array.isArray(history.messages)) return "";
  const texts: string[] = [];
  for (const message of history.messages) {
    if (!isRecord(message) || !Array.isArray(message.content)) continue;
    for (const part of message.content) {
      if (isRecord(part) && part.type === "text" && typeof part.text === "string") {
        texts.push(part.text);
      }
    }
  }
  return texts.join("\n\n");
}

async function handleLoad(
  core: EmulatorCore,
  connection: Connection,
  channelId: number,
  channel: ChannelState,
  creation: Json,
  domain: string,
  flavour: "loadModel" | "getOrLoad",
): Promise<void> {
  const key = String(flavour === "loadModel" ? creation.modelKey : creation.identifier);
  const askedRaw = stackValue(
    creation.loadConfigStack,
    domain === "embedding" ? "embedding.load.contextLength" : "llm.load.contextLength",
  );
  const askedContext = typeof askedRaw === "number" ? askedRaw : null;
  const requestedIdentifier = flavour === "loadModel" && typeof creation.identifier === "string"
    ? creation.identifier
    : undefined;
  const sendMessage = (message: Json) =>
    send(connection, { type: "channelSend", channelId, message });

  if (flavour === "getOrLoad") {
    const existing = [...core.instances.values()].find((instance) =>
      instance.profile.type === domain &&
      (instance.identifier === key || instance.profile.modelKey === key)
    );
    if (existing !== undefined) {
      sendMessage({ type: "alreadyLoaded", info: core.instanceInfo(existing) });
      send(connection, { type: "channelClose", channelId });
      return;
    }
  }
  const profile = core.findProfile(key);
  if (profile === undefined) {
    core.loads.push({
      modelKey: key,
      identifier: null,
      askedContext,
      loadedContext: null,
      ok: false,
      error: `Cannot find a model with path "${key}"`,
      virtualMs: core.clock.advance(0),
    });
    throw core.notFoundError(key);
  }
  if (profile.type !== domain) {
    throw new LmsError("Model has wrong domain.", {
      displayData: {
        code: "generic.domainMismatch",
        path: profile.path,
        actualDomain: profile.type,
        expectedDomain: domain,
      },
    });
  }
  const record: LoadRecord = {
    modelKey: profile.modelKey,
    identifier: requestedIdentifier ?? null,
    askedContext,
    loadedContext: null,
    ok: false,
    error: null,
    virtualMs: 0,
  };
  core.loads.push(record);
  const k = ++core.counter(profile.modelKey).load;
  injectFaults(core, connection, channel, record, { call: "Load", k, scripted: profile.faults });
  if (flavour === "loadModel") {
    sendMessage({ type: "resolved", info: core.modelInfo(profile) });
  }
  const asked = askedContext ?? core.defaultContext(profile);
  let context: number;
  try {
    context = core.admitLoad(profile, asked, requestedIdentifier);
  } catch (error) {
    record.error = (error as Error).message;
    record.virtualMs = core.clock.advance(TIMING.refusedLoadMs);
    throw error;
  }
  if (flavour === "getOrLoad") {
    sendMessage({ type: "startLoading", identifier: key, info: core.modelInfo(profile) });
  }
  const progressType = flavour === "loadModel" ? "progress" : "loadProgress";
  const realDelay = profile.realDelayMs?.load ?? 0;
  const steps = realDelay > 0 ? Math.max(2, Math.min(20, Math.floor(realDelay / 25))) : 2;
  for (let step = 1; step <= steps; step++) {
    if (realDelay > 0) {
      const finished = await sleep(realDelay / steps, channel.abort.signal);
      if (!finished) {
        record.error = "cancelled";
        record.virtualMs = core.clock.advance(loadMs(profile, context) * (step - 1) / steps);
        throw new LmsError("Model loading was cancelled");
      }
    }
    sendMessage({ type: progressType, progress: step / steps });
  }
  const instance = core.addInstance(profile, requestedIdentifier, context);
  record.identifier = instance.identifier;
  record.loadedContext = context;
  record.ok = true;
  record.virtualMs = core.clock.advance(loadMs(profile, context));
  sendMessage({
    type: flavour === "loadModel" ? "success" : "loadSuccess",
    info: core.instanceInfo(instance),
  });
  send(connection, { type: "channelClose", channelId });
}

async function handlePredict(
  core: EmulatorCore,
  connection: Connection,
  channelId: number,
  channel: ChannelState,
  creation: Json,
): Promise<void> {
  const instance = core.resolve(creation.modelSpecifier, "llm");
  const profile = instance.profile;
  const prompt = historyText(creation.history);
  const promptTokens = countTokens(prompt);
  const reading = readPrompt(prompt);
  const record: PredictionRecord = {
    modelKey: profile.modelKey,
    identifier: instance.identifier,
    loadedContext: instance.contextLength,
    promptTokens,
    prefilledTokens: 0,
    correct: null,
    kind: reading.kind,
    virtualMs: 0,
    predictedTokens: 0,
    stopReason: null,
    error: null,
  };
  core.predictions.push(record);
  const k = ++core.counter(profile.modelKey).predict;
  injectFaults(core, connection, channel, record, { call: "Predict", k, scripted: profile.faults });
  const graded = reading.kind !== "other";
  if (promptTokens > instance.contextLength) {
    record.correct = graded ? false : null;
    record.virtualMs = core.clock.advance(TIMING.predictOverheadMs);
    const title = "The number of tokens to keep from the initial prompt is greater than the " +
      `context length. Try to load the model with a larger context length, or provide a shorter ` +
      "input";
    record.error = title;
    throw new LmsError(title, {
      cause: `The prompt has ${promptTokens} tokens; the model is loaded with a context length ` +
        `of ${instance.contextLength}.`,
    });
  }
  const cached = cachedPrefixTokens(instance.cacheText, prompt);
  record.prefilledTokens = promptTokens - cached;
  const prefill = prefillMs(profile, cached, promptTokens);
  const sendMessage = (message: Json) =>
    send(connection, { type: "channelSend", channelId, message });
  const predictionConfig = collapseStack(creation.predictionConfigStack);
  const modelInfo = core.instanceInfo(instance);
  const loadModelConfig = core.loadConfig(instance);

  const realDelay = profile.realDelayMs?.predict ?? 0;
  if (realDelay > 0) {
    sendMessage({ type: "promptProcessingProgress", progress: 0 });
    const finished = await sleep(realDelay, channel.abort.signal);
    if (!finished) {
      const elapsed = core.clock.advance(TIMING.predictOverheadMs + prefill / 2);
      instance.cacheText = "";
      record.virtualMs = elapsed;
      record.stopReason = "userStopped";
      sendMessage({
        type: "success",
        stats: {
          stopReason: "userStopped",
          promptTokensCount: promptTokens,
          predictedTokensCount: 0,
          totalTokensCount: promptTokens,
          totalTimeSec: elapsed / 1000,
        },
        modelInfo,
        loadModelConfig,
        predictionConfig,
      });
      send(connection, { type: "channelClose", channelId });
      return;
    }
    sendMessage({ type: "promptProcessingProgress", progress: 1 });
  }

  const answer = emulatedAnswer(profile, instance.contextLength, prompt, promptTokens);
  let text = answer.text;
  let stopReason = "eosFound";
  const stopStrings = stackValue(creation.predictionConfigStack, "llm.prediction.stopStrings");
  if (Array.isArray(stopStrings)) {
    for (const stop of stopStrings) {
      if (typeof stop !== "string" || stop === "") continue;
      const at = text.indexOf(stop);
      if (at >= 0) {
        text = text.slice(0, at);
        stopReason = "stopStringFound";
      }
    }
  }
  let pieces = tokenPieces(text);
  const maxSetting = stackValue(
    creation.predictionConfigStack,
    "llm.prediction.maxPredictedTokens",
  );
  const maxTokens = isRecord(maxSetting) && maxSetting.checked === true &&
      typeof maxSetting.value === "number"
    ? maxSetting.value
    : Infinity;
  const room = instance.contextLength - promptTokens;
  if (pieces.length > Math.min(maxTokens, room)) {
    stopReason = maxTokens <= room ? "maxPredictedTokensReached" : "contextLengthReached";
    pieces = pieces.slice(0, Math.max(0, Math.min(maxTokens, room)));
  }
  text = pieces.join("");
  const generation = generateMs(profile, promptTokens, pieces.length);
  const total = core.clock.advance(TIMING.predictOverheadMs + prefill + generation);
  instance.cacheText = prompt + text;
  record.virtualMs = total;
  record.predictedTokens = pieces.length;
  record.stopReason = stopReason;
  record.correct = reading.kind === "needle"
    ? reading.value !== undefined && text.includes(reading.value)
    : reading.kind === "sanity"
    ? text.includes("4")
    : null;

  const chunk = Math.max(1, Math.ceil(pieces.length / 3));
  for (let i = 0; i < pieces.length; i += chunk) {
    const slice = pieces.slice(i, i + chunk);
    sendMessage({
      type: "fragment",
      fragment: {
        content: slice.join(""),
        tokensCount: slice.length,
        containsDrafted: false,
        reasoningType: "none",
        isStructural: false,
      },
    });
  }
  const ttftSec = (TIMING.predictOverheadMs + prefill) / 1000;
  sendMessage({
    type: "success",
    stats: {
      stopReason,
      tokensPerSecond: generation > 0 ? pieces.length / (generation / 1000) : 0,
      numGpuLayers: -1,
      timeToFirstTokenSec: ttftSec,
      totalTimeSec: total / 1000,
      promptTokensCount: promptTokens,
      predictedTokensCount: pieces.length,
      totalTokensCount: promptTokens + pieces.length,
    },
    modelInfo,
    loadModelConfig,
    predictionConfig,
  });
  send(connection, { type: "channelClose", channelId });
}

function handleChannelCreate(
  core: EmulatorCore,
  connection: Connection,
  channelId: number,
  endpoint: string,
  creationParameter: unknown,
): void {
  const channel: ChannelState = { endpoint, abort: new AbortController(), hung: false };
  connection.channels.set(channelId, channel);
  const creation = isRecord(creationParameter) ? creationParameter : {};
  const namespace = connection.namespace;
  let work: Promise<void>;
  if ((namespace === "llm" || namespace === "embedding") && endpoint === "loadModel") {
    work = handleLoad(core, connection, channelId, channel, creation, namespace, "loadModel");
  } else if ((namespace === "llm" || namespace === "embedding") && endpoint === "getOrLoad") {
    work = handleLoad(core, connection, channelId, channel, creation, namespace, "getOrLoad");
  } else if (namespace === "llm" && endpoint === "predict") {
    work = handlePredict(core, connection, channelId, channel, creation);
  } else if (namespace === "system" && endpoint === "alive") {
    return; // Stays open for as long as the client wants.
  } else {
    work = Promise.reject(
      new LmsError(`Unknown channel endpoint "${namespace}/${endpoint}"`, {
        cause: "The LM Studio emulator does not implement this endpoint.",
      }),
    );
  }
  work.then(
    () => connection.channels.delete(channelId),
    (error: unknown) => {
      if (error instanceof Silenced) {
        if (!channel.hung) connection.channels.delete(channelId);
        return;
      }
      connection.channels.delete(channelId);
      send(connection, { type: "channelError", channelId, error: toWireError(error) });
    },
  );
}

function toWireError(error: unknown): WireError {
  if (error instanceof LmsError) return error.wire;
  const title = `Internal emulator error: ${
    error instanceof Error ? error.message : String(error)
  }`;
  return { title, rootTitle: title };
}

function handleFrame(core: EmulatorCore, connection: Connection, data: unknown): void {
  let message: unknown;
  try {
    message = JSON.parse(String(data));
  } catch {
    send(connection, { type: "communicationWarning", warning: "Received invalid JSON" });
    return;
  }
  if (!isRecord(message)) return;
  if (!connection.authenticated) {
    if (message.authVersion === 1) {
      connection.authenticated = true;
      send(connection, { success: true });
    } else {
      send(connection, { success: false, error: "Expected an authentication message first" });
    }
    return;
  }
  switch (message.type) {
    case "keepAlive":
      send(connection, { type: "keepAliveAck" });
      return;
    case "rpcCall": {
      const callId = message.callId;
      const endpoint = String(message.endpoint);
      try {
        const result = handleRpc(core, connection, endpoint, message.parameter);
        send(connection, { type: "rpcResult", callId, result });
      } catch (error) {
        if (error instanceof Silenced) return;
        send(connection, { type: "rpcError", callId, error: toWireError(error) });
      }
      return;
    }
    case "channelCreate":
      handleChannelCreate(
        core,
        connection,
        Number(message.channelId),
        String(message.endpoint),
        message.creationParameter,
      );
      return;
    case "channelSend": {
      const channel = connection.channels.get(Number(message.channelId));
      if (channel === undefined || channel.hung) return;
      if (isRecord(message.message) && message.message.type === "cancel") channel.abort.abort();
      return;
    }
    case "signalSubscribe":
      send(connection, {
        type: "signalError",
        subscribeId: message.subscribeId,
        error: toWireError(new LmsError(`Unknown signal endpoint "${String(message.endpoint)}"`)),
      });
      return;
    case "writableSignalSubscribe":
      send(connection, {
        type: "writableSignalError",
        subscribeId: message.subscribeId,
        error: toWireError(
          new LmsError(`Unknown writable signal endpoint "${String(message.endpoint)}"`),
        ),
      });
      return;
    default:
      // communicationWarning, channelAck, unsubscribes: nothing to do.
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

async function readJsonBody(request: Request): Promise<Json> {
  const text = await request.text();
  if (text.trim() === "") return {};
  const body: unknown = JSON.parse(text);
  if (!isRecord(body)) throw new Error("expected a JSON object");
  return body;
}

function loadByHand(
  core: EmulatorCore,
  modelKey: string,
  identifier?: string,
  contextLength?: number,
): LoadedRecord {
  const profile = core.findProfile(modelKey);
  if (profile === undefined) throw core.notFoundError(modelKey);
  const context = core.admitLoad(
    profile,
    contextLength ?? core.defaultContext(profile),
    identifier,
  );
  return core.loadedRecord(core.addInstance(profile, identifier, context));
}

async function handleHttp(core: EmulatorCore, request: Request): Promise<Response> {
  const url = new URL(request.url);
  const route = `${request.method} ${url.pathname}`;
  try {
    switch (route) {
      case "GET /lmstudio-greeting":
        return json({ lmstudio: true });
      case "GET /__emulator/stats":
        return json(core.stats());
      case "GET /__emulator/profiles":
        return json({ models: core.profiles });
      case "POST /__emulator/reset":
        core.reset();
        return json({ ok: true });
      case "POST /__emulator/faults": {
        const body = await readJsonBody(request);
        const allowed = [
          "dropNextLoad",
          "dropNextPredict",
          "hangNextLoad",
          "hangNextPredict",
          "hangNextCountTokens",
        ] as const;
        for (const key of Object.keys(body)) {
          if (!(allowed as readonly string[]).includes(key)) {
            return json({ error: `unknown fault "${key}"` }, 400);
          }
        }
        for (const key of allowed) if (body[key] === true) core.oneShot[key] = true;
        return json({ ok: true, armed: core.oneShot });
      }
      case "POST /__emulator/load": {
        const body = await readJsonBody(request);
        if (typeof body.modelKey !== "string") return json({ error: "modelKey is required" }, 400);
        const identifier = typeof body.identifier === "string" ? body.identifier : undefined;
        const context = typeof body.contextLength === "number" ? body.contextLength : undefined;
        try {
          return json(loadByHand(core, body.modelKey, identifier, context));
        } catch (error) {
          if (!(error instanceof LmsError)) throw error;
          const status = error.wire.displayData?.code === "generic.pathNotFound" ? 404 : 409;
          return json({ error: error.message }, status);
        }
      }
    }
  } catch (error) {
    return json({ error: (error as Error).message }, 400);
  }
  const namespace = url.pathname.slice(1);
  if (request.method === "GET" && NAMESPACES.has(namespace)) {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return json({ error: "expected a WebSocket upgrade" }, 426);
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    const connection: Connection = {
      socket,
      namespace,
      authenticated: false,
      channels: new Map(),
    };
    core.connections.add(connection);
    socket.onmessage = (event) => handleFrame(core, connection, event.data);
    socket.onclose = () => {
      core.connections.delete(connection);
      for (const channel of connection.channels.values()) channel.abort.abort();
      connection.channels.clear();
    };
    socket.onerror = () => {};
    return response;
  }
  return json({ error: `no route for ${route}` }, 404);
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/** Starts an emulator serving `profiles` on 127.0.0.1 (port 0 picks a free port). */
export function startEmulator(options: EmulatorOptions): Promise<Emulator> {
  const profiles = options.profiles.map((profile, index) =>
    validateProfile(profile, `profiles[${index}]`)
  );
  const core = new EmulatorCore(profiles);
  return new Promise((resolveStart, rejectStart) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: "127.0.0.1",
        port: options.port ?? 0,
        onListen: ({ port }) => {
          const emulator: Emulator = {
            port,
            url: `ws://127.0.0.1:${port}`,
            httpUrl: `http://127.0.0.1:${port}`,
            stats: () => core.stats(),
            reset: () => core.reset(),
            injectFaults: (faults) => Object.assign(core.oneShot, faults),
            loadByHand: (modelKey, identifier, contextLength) =>
              loadByHand(core, modelKey, identifier, contextLength),
            close: async () => {
              for (const connection of core.connections) {
                for (const channel of connection.channels.values()) channel.abort.abort();
                try {
                  connection.socket.close();
                } catch {
                  // Already closed.
                }
              }
              core.connections.clear();
              await server.shutdown();
            },
          };
          resolveStart(emulator);
        },
        onError: (error) => json({ error: String(error) }, 500),
      }, (request) => handleHttp(core, request));
    } catch (error) {
      rejectStart(error);
    }
  });
}

const USAGE = `Usage: deno task emulator [--port N] [--profiles FILE]

  --port N         TCP port on 127.0.0.1 (default 1234; 0 picks a free port)
  --profiles FILE  profiles JSON { "models": [...] } (default scripts/demo_fleet.json)`;

async function main(args: string[]): Promise<number> {
  let port = 1234;
  let profilesPath: string | URL = DEMO_FLEET_URL;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [flag, inline] = arg?.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = () => inline ?? args[++i];
    if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      return 0;
    } else if (flag === "--port") {
      const parsed = Number(value());
      if (!Number.isInteger(parsed) || parsed < 0 || parsed > 65535) {
        console.error(`error: --port must be an integer from 0 to 65535\n\n${USAGE}`);
        return 2;
      }
      port = parsed;
    } else if (flag === "--profiles") {
      const path = value();
      if (path === undefined) {
        console.error(`error: --profiles needs a file\n\n${USAGE}`);
        return 2;
      }
      profilesPath = path;
    } else {
      console.error(`error: unknown argument "${arg}"\n\n${USAGE}`);
      return 2;
    }
  }
  let profiles: ModelProfile[];
  try {
    profiles = await readProfilesFile(profilesPath);
  } catch (error) {
    console.error(`error: cannot read profiles: ${(error as Error).message}`);
    return 2;
  }
  const emulator = await startEmulator({ profiles, port });
  console.log(`LM Studio emulator listening on ${emulator.url}`);
  const stopped = new Promise<void>((resolve) => {
    const stop = () => resolve();
    Deno.addSignalListener("SIGINT", stop);
    if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);
  });
  await stopped;
  await emulator.close();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

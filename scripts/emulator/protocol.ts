/**
 * The LM Studio emulator's back end of the shared protocol layer (`scripts/protocol/`): what its
 * RPC calls and its load and predict channels answer, with scripted faults.
 *
 * @module
 */

import { emulatedAnswer, readPrompt } from "./answers.ts";
import { type EmulatorCore, EngineFailure } from "./core.ts";
import {
  type ChannelState,
  type Connection,
  endPrediction,
  historyText,
  type ProtocolBackend,
  send,
  sendFragments,
  Silenced,
  sleep,
} from "../protocol/frames.ts";
import type { ProfileFaults } from "./profile.ts";
import type { LoadRecord, OneShotFaults, PredictionRecord } from "./stats.ts";
import { cancelledLoadMs, generateMs, loadMs, prefillMs, refusalMs, TIMING } from "./timing.ts";
import { cachedPrefixTokens, countTokens, tokenize, tokenPieces } from "./tokenizer.ts";
import { collapseStack, isRecord, type Json, LmsError, stackValue } from "../protocol/wire.ts";

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
      case "listDownloadedModels": {
        const listing = core.profiles.map((profile) => core.modelInfo(profile));
        const odd = listing.length - 1;
        if (odd >= 0 && takeOneShot(core, "malformNextListing")) {
          return listing.map((info, i) => (i === odd ? { ...info, sizeBytes: "large" } : info));
        }
        return listing;
      }
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
  let context = asked;
  let failure: EngineFailure | undefined;
  try {
    context = core.admitLoad(profile, asked, requestedIdentifier);
  } catch (error) {
    // The guardrail (and a bad request) refuses before any progress; the engine after it.
    if (!(error instanceof EngineFailure)) {
      record.error = (error as Error).message;
      record.virtualMs = await core.spend(refusalMs(profile, asked));
      throw error;
    }
    failure = error;
  }
  if (flavour === "getOrLoad") {
    sendMessage({ type: "startLoading", identifier: key, info: core.modelInfo(profile) });
  }
  const progressType = flavour === "loadModel" ? "progress" : "loadProgress";
  const totalMs = failure === undefined ? loadMs(profile, context) : refusalMs(profile, asked);
  const report = (progress: number) => sendMessage({ type: progressType, progress });
  const realDelay = profile.realDelayMs?.load ?? 0;
  const finished = await streamProgress(core, channel, realDelay, totalMs, report, {
    ignoreCancel: profile.cancelIgnored === true,
  });
  if (!finished) {
    record.error = "cancelled";
    record.virtualMs = cancelledLoadMs();
    throw new LmsError("Model loading was cancelled");
  }
  record.virtualMs = totalMs;
  if (failure !== undefined) {
    record.error = failure.message;
    throw failure;
  }
  const instance = core.addInstance(profile, requestedIdentifier, context);
  record.identifier = instance.identifier;
  record.loadedContext = context;
  record.ok = true;
  sendMessage({
    type: flavour === "loadModel" ? "success" : "loadSuccess",
    info: core.instanceInfo(instance),
  });
  send(connection, { type: "channelClose", channelId });
}

/**
 * Streams the progress of a load that the guardrail let start and that takes `totalMs` of virtual
 * time: the first report after {@link TIMING.firstProgressMs}, the last (1) at the end. Real
 * waits between reports come from the profile's `realDelay`, from pacing, or else from the
 * cancel hold after the first report, so that a client can cancel in time. Returns whether the
 * load ran to its end; a cancel before it charges {@link cancelledLoadMs} (whenever it came),
 * unless `ignoreCancel`: then the load runs to its end all the same.
 */
async function streamProgress(
  core: EmulatorCore,
  channel: ChannelState,
  realDelay: number,
  totalMs: number,
  report: (progress: number) => void,
  options: { ignoreCancel: boolean },
): Promise<boolean> {
  const signal = channel.abort.signal;
  const firstMs = Math.min(TIMING.firstProgressMs, totalMs);
  const steps = realDelay > 0 ? Math.max(2, Math.min(20, Math.floor(realDelay / 25))) : 2;
  const hold = realDelay === 0 && core.timeScale === 0 ? core.cancelHoldMs : 0;
  let advanced = 0;
  let realLeft = realDelay + totalMs * core.timeScale;
  for (let step = 1; step <= steps; step++) {
    const virtualMs = step === 1 ? firstMs : (totalMs - firstMs) / (steps - 1);
    const realMs = realDelay / steps + virtualMs * core.timeScale;
    if (realMs > 0 && !(await sleep(realMs, signal))) break;
    realLeft -= realMs;
    if (signal.aborted) break;
    if (step === 1) advanced = core.clock.advance(firstMs);
    const share = firstMs / totalMs;
    report(share + (1 - share) * (step - 1) / (steps - 1));
    if (step === 1 && hold > 0 && !(await sleep(hold, signal))) break;
    if (step === steps) {
      core.clock.advance(totalMs - advanced);
      return true;
    }
  }
  if (options.ignoreCancel) {
    // The server goes on loading whatever the client said: the whole load, as long as it would
    // have taken, and it stays.
    if (realLeft > 0) await sleep(realLeft, new AbortController().signal);
    core.clock.advance(totalMs - advanced);
    return true;
  }
  core.clock.advance(cancelledLoadMs() - advanced);
  return false;
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
  const temperature = stackValue(creation.predictionConfigStack, "llm.prediction.temperature");
  if (typeof temperature === "number") record.temperature = temperature;
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
  // Hybrid and sliding-window models cannot rewind their cache: the whole prompt again.
  const cached = profile.promptCache === false ? 0 : cachedPrefixTokens(instance.cacheText, prompt);
  record.prefilledTokens = promptTokens - cached;
  const prefill = prefillMs(profile, cached, promptTokens);
  const sendMessage = (message: Json) =>
    send(connection, { type: "channelSend", channelId, message });
  const about = {
    predictionConfig: collapseStack(creation.predictionConfigStack),
    modelInfo: core.instanceInfo(instance),
    loadModelConfig: core.loadConfig(instance),
  };

  const realDelay = profile.realDelayMs?.predict ?? 0;
  if (realDelay > 0) {
    sendMessage({ type: "promptProcessingProgress", progress: 0 });
    const finished = await sleep(realDelay, channel.abort.signal);
    if (!finished) {
      const elapsed = core.clock.advance(TIMING.predictOverheadMs + prefill / 2);
      instance.cacheText = "";
      record.virtualMs = elapsed;
      record.stopReason = "userStopped";
      endPrediction(connection, channelId, {
        stopReason: "userStopped",
        promptTokensCount: promptTokens,
        predictedTokensCount: 0,
        totalTokensCount: promptTokens,
        totalTimeSec: elapsed / 1000,
      }, about);
      return;
    }
    sendMessage({ type: "promptProcessingProgress", progress: 1 });
  }

  if (profile.crashAbove !== undefined && promptTokens > profile.crashAbove) {
    // The engine dies once the prompt is in: the instance goes with it (LM Studio #932).
    record.virtualMs = await core.spend(TIMING.predictOverheadMs + prefill);
    record.correct = graded ? false : null;
    const title = "The model has crashed without additional information. " +
      "(Exit code: 18446744072635812000)";
    record.error = title;
    core.instances.delete(instance.identifier);
    throw new LmsError(title);
  }

  if (takeOneShot(core, "endlessNextPredict")) {
    await streamEndlessly(record, channel, sendMessage);
    endPrediction(connection, channelId, {
      stopReason: "userStopped",
      promptTokensCount: promptTokens,
      predictedTokensCount: record.predictedTokens,
      totalTokensCount: promptTokens + record.predictedTokens,
    }, about);
    return;
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
  const total = await core.spend(TIMING.predictOverheadMs + prefill + generation);
  instance.cacheText = prompt + text;
  record.virtualMs = total;
  record.predictedTokens = pieces.length;
  record.stopReason = stopReason;
  record.correct = reading.kind === "needle"
    ? reading.value !== undefined && text.includes(reading.value)
    : reading.kind === "sanity"
    ? text.includes("4")
    : null;

  sendFragments(connection, channelId, pieces);
  const ttftSec = (TIMING.predictOverheadMs + prefill) / 1000;
  endPrediction(connection, channelId, {
    stopReason,
    tokensPerSecond: generation > 0 ? pieces.length / (generation / 1000) : 0,
    numGpuLayers: -1,
    timeToFirstTokenSec: ttftSec,
    totalTimeSec: total / 1000,
    promptTokensCount: promptTokens,
    predictedTokensCount: pieces.length,
    totalTokensCount: promptTokens + pieces.length,
  }, about);
}

/**
 * Sends fragments of an answer that never ends, yielding between them so that a cancel can
 * arrive, until the client cancels the channel; counts what it sent in `record`.
 */
async function streamEndlessly(
  record: PredictionRecord,
  channel: ChannelState,
  sendMessage: (message: Json) => void,
): Promise<void> {
  record.error = "fault: endless";
  while (!channel.abort.signal.aborted) {
    sendMessage({
      type: "fragment",
      fragment: {
        content: " and so on",
        tokensCount: 3,
        containsDrafted: false,
        reasoningType: "none",
        isStructural: false,
      },
    });
    record.predictedTokens += 3;
    await sleep(0, channel.abort.signal);
  }
  record.stopReason = "userStopped";
}

/** The emulator as a back end of the shared protocol layer. */
export function emulatorBackend(core: EmulatorCore): ProtocolBackend {
  return {
    connections: core.connections,
    name: "emulator",
    rpc: (connection, endpoint, parameter) => handleRpc(core, connection, endpoint, parameter),
    channel(connection, channelId, channel, endpoint, creation) {
      const namespace = connection.namespace;
      const domain = namespace === "llm" || namespace === "embedding" ? namespace : null;
      if (domain !== null && (endpoint === "loadModel" || endpoint === "getOrLoad")) {
        return handleLoad(core, connection, channelId, channel, creation, domain, endpoint);
      }
      if (namespace === "llm" && endpoint === "predict") {
        return handlePredict(core, connection, channelId, channel, creation);
      }
      return null;
    },
  };
}

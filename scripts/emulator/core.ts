/**
 * The LM Studio emulator's state: profiles, loaded instances, the virtual clock, statistics and
 * fault counters, and the rules shared by every way of loading a model.
 *
 * @module
 */

import type { ModelProfile } from "./profile.ts";
import { estimatedMemoryGb, quantizationBits, VirtualClock } from "./timing.ts";
import type {
  EmulatorStats,
  LoadedRecord,
  LoadRecord,
  OneShotFaults,
  PredictionRecord,
} from "./stats.ts";
import {
  isRecord,
  type Json,
  type KvField,
  LmsError,
  referencedInstance,
} from "../protocol/wire.ts";

export interface Instance {
  identifier: string;
  instanceReference: string;
  profile: ModelProfile;
  contextLength: number;
  /** Text the KV cache holds (last prompt plus its answer), for prompt caching. */
  cacheText: string;
}

export interface FaultCounters {
  load: number;
  predict: number;
  countTokens: number;
}

export type { ChannelState, Connection } from "../protocol/frames.ts";
export { Silenced, sleep } from "../protocol/frames.ts";
import type { Connection } from "../protocol/frames.ts";

/**
 * A load the engine fails after the guardrail let it start (the weights were read, then the
 * context could not be made): LM Studio reports load progress before this error.
 */
export class EngineFailure extends LmsError {}

export class EmulatorCore {
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

  /** Real milliseconds slept per virtual millisecond (0: answer at once). */
  readonly timeScale: number;
  /**
   * Real milliseconds an unpaced load waits after its first progress for the client's cancel
   * (0: no wait). Without it such a load finishes before any cancel could arrive.
   */
  readonly cancelHoldMs: number;

  constructor(profiles: ModelProfile[], timeScale = 0, cancelHoldMs = 0) {
    this.profiles = profiles;
    this.timeScale = timeScale;
    this.cancelHoldMs = cancelHoldMs;
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
   * Studio would send. Shared by the WebSocket load and the by-hand load. The refusal texts are
   * LM Studio's own (shared notes on LM Studio, section 1).
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
    if (profile.noRuntime === true) {
      const format = profile.format === "mlx" ? "safetensors" : profile.format;
      throw new LmsError("Failed to load model", {
        cause: `failed to load model No LM Runtime found for model format ${format}!`,
      });
    }
    const shrinks = profile.shrinks;
    const loaded = this.loads.filter((r) => r.modelKey === profile.modelKey && r.ok).length;
    if (shrinks !== undefined && loaded >= shrinks.afterLoads && asked > shrinks.loadFailAbove) {
      // The engine's free memory shrank: llama.cpp fails to allocate once the load is under way.
      throw new EngineFailure("Failed to load model", {
        cause: "Failed to initialize the context: failed to allocate compute pp buffers",
      });
    }
    if (
      profile.loadFailAbove !== undefined && asked > profile.loadFailAbove &&
      profile.refusal === "engine"
    ) {
      throw new EngineFailure("Failed to load model", {
        cause: "Failed to initialize the context: failed to allocate compute pp buffers",
      });
    }
    if (
      profile.loadFailAbove !== undefined && asked > profile.loadFailAbove &&
      profile.refusal === "exit-code"
    ) {
      throw new EngineFailure(
        "(Exit code: 133). Please check settings and try loading the model again.",
      );
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
    if (profile.fitAbove !== undefined && asked > profile.fitAbove) return profile.fitAbove;
    // Auto-fit raising a small request: loaded larger than asked, silently.
    if (profile.fitUpTo !== undefined && asked < profile.fitUpTo) return profile.fitUpTo;
    return asked;
  }

  /**
   * Moves the virtual clock by `ms` and, when the emulator runs paced, sleeps that much scaled to
   * real time, so that a client timing calls with its own clock sees the emulator's costs.
   */
  async spend(ms: number): Promise<number> {
    const step = this.clock.advance(ms);
    if (this.timeScale > 0 && step > 0) {
      await new Promise((resolve) => setTimeout(resolve, step * this.timeScale));
    }
    return step;
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
    const referenced = referencedInstance(this.instances.values(), specifier);
    if (referenced !== undefined) return referenced;
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

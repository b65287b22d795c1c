/**
 * The emulator's virtual clock and its timing model.
 *
 * @module
 */

import type { ModelProfile } from "./profile.ts";

/**
 * Timing constants of the virtual clock, for a consumer GPU / Apple-silicon laptop. Speeds are
 * given for a 7B model and scale inversely with the parameter count.
 */
export const TIMING = {
  /** Fixed cost of any load (process start, metadata), ms. */
  loadBaseMs: 1500,
  /** Reading weights into (V)RAM, ms per GB of weights. */
  loadMsPerWeightGb: 1000,
  /** Allocating the KV cache, ms per GB of KV cache. */
  loadMsPerKvGb: 150,
  /** A load refused by the guardrails or by a bad request is quick, ms. */
  refusedLoadMs: 300,
  /**
   * From the request to the first load progress, once the guardrail let the load start (the
   * runtime starts and begins reading the weights), ms. A check (a load cancelled at its first
   * progress) learns what the guardrail says for this plus {@link TIMING.cancelMs}.
   */
  firstProgressMs: 500,
  /** Stopping a load under way and freeing what it had read, ms (like an unload). */
  cancelMs: 250,
  /** Unloading, ms. */
  unloadMs: 250,
  /** Prompt processing speed of a 7B model at position 0, tokens/s. */
  prefillTokensPerSec7B: 4500,
  /**
   * Position at which attention has doubled the per-token prefill cost, tokens; a profile's
   * `prefillSlowdownTokens` replaces it (a machine slow at long prompts).
   */
  prefillSlowdownTokens: 24_576,
  /** Generation speed of a 7B model at short context, tokens/s. */
  generateTokensPerSec7B: 55,
  /** Position at which attention has doubled the per-token generation cost, tokens. */
  generateSlowdownTokens: 65_536,
  /** Counting or tokenizing, tokens/ms. */
  tokenizeTokensPerMs: 200,
  /** Fixed overhead of a prediction (sampling setup, first forward pass), ms. */
  predictOverheadMs: 40,
  /** Default KV cache bytes per token of an 8B model (grows with sqrt of size). */
  kvBytesPerToken8B: 131_072,
  /** Runtime overhead counted in the guardrail's memory estimate, bytes. */
  runtimeOverheadBytes: 600_000_000,
} as const;

/** Parameter count in billions, from `paramsString` ("7B", "137M") or else from the file size. */
export function paramsBillions(profile: ModelProfile): number {
  const match = /^([\d.]+)\s*([BMK])/i.exec(profile.paramsString);
  if (match?.[1] !== undefined && match[2] !== undefined) {
    const scale = { b: 1, m: 1e-3, k: 1e-6 }[match[2].toLowerCase() as "b" | "m" | "k"];
    const value = Number(match[1]) * scale;
    if (value > 0) return value;
  }
  return Math.max(0.01, profile.sizeBytes / 1e9 / (quantizationBits(profile.quantization) / 8));
}

/** Bits per weight of a quantization name ("Q4_K_M" -> 4, "8bit" -> 8, "F16" -> 16). */
export function quantizationBits(name: string): number {
  const match = /(\d+)/.exec(name);
  const bits = match?.[1] === undefined ? 16 : Number(match[1]);
  return bits >= 1 && bits <= 32 ? bits : 16;
}

/** KV cache bytes per token of context for a profile. */
export function kvBytesPerToken(profile: ModelProfile): number {
  if (profile.kvBytesPerToken !== undefined) return profile.kvBytesPerToken;
  return Math.round(TIMING.kvBytesPerToken8B * Math.sqrt(paramsBillions(profile) / 8));
}

/** Memory LM Studio's guardrail estimates for loading at `contextLength`, in GB. */
export function estimatedMemoryGb(profile: ModelProfile, contextLength: number): number {
  const bytes = profile.sizeBytes + kvBytesPerToken(profile) * contextLength +
    TIMING.runtimeOverheadBytes;
  return Math.round(bytes / 1e7) / 100;
}

/** Virtual time a successful load at `contextLength` takes, ms. */
export function loadMs(profile: ModelProfile, contextLength: number): number {
  const weightsGb = profile.sizeBytes / 1e9;
  const kvGb = kvBytesPerToken(profile) * contextLength / 1e9;
  return Math.round(
    TIMING.loadBaseMs + TIMING.loadMsPerWeightGb * weightsGb + TIMING.loadMsPerKvGb * kvGb,
  );
}

/**
 * Virtual time a refused load at `asked` takes, ms: a guardrail refusal (or a missing runtime)
 * is quick; an engine failure reads the weights and tries to make the context, like a full load.
 */
export function refusalMs(profile: ModelProfile, asked: number): number {
  const engine = profile.noRuntime !== true &&
    (profile.refusal === "engine" || profile.refusal === "exit-code");
  return engine ? loadMs(profile, Math.min(asked, profile.declaredContext)) : TIMING.refusedLoadMs;
}

/**
 * Virtual time a load cancelled before it finished costs, ms: the wait for its first progress and
 * the stop. The same wherever the cancel came in real time, so that runs are reproducible.
 */
export function cancelledLoadMs(): number {
  return TIMING.firstProgressMs + TIMING.cancelMs;
}

function speedScale(profile: ModelProfile): number {
  return Math.min(40, Math.max(0.05, 7 / paramsBillions(profile)));
}

/**
 * Virtual time to prefill positions `[from, to)`, ms. The cost of a token at position p is
 * `(1 + p / k) / speed`, k the profile's `prefillSlowdownTokens` (else the default); this is its
 * integral.
 */
export function prefillMs(profile: ModelProfile, from: number, to: number): number {
  if (to <= from) return 0;
  const speed = TIMING.prefillTokensPerSec7B * speedScale(profile) / 1000;
  const k = profile.prefillSlowdownTokens ?? TIMING.prefillSlowdownTokens;
  return ((to - from) + (to * to - from * from) / (2 * k)) / speed;
}

/** Virtual time to generate `tokens` tokens after a context of `position` tokens, ms. */
export function generateMs(profile: ModelProfile, position: number, tokens: number): number {
  const speed = TIMING.generateTokensPerSec7B * speedScale(profile) / 1000;
  return tokens * (1 + position / TIMING.generateSlowdownTokens) / speed;
}

/** A clock that only moves when told to: the emulator's notion of elapsed time. */
export class VirtualClock {
  #now = 0;
  /** Virtual milliseconds elapsed since start or reset. */
  get now(): number {
    return this.#now;
  }
  /** Moves the clock forward by `ms` (rounded to whole ms) and returns that amount. */
  advance(ms: number): number {
    const step = Math.max(0, Math.round(ms));
    this.#now += step;
    return step;
  }
  /** Sets the clock back to zero. */
  reset(): void {
    this.#now = 0;
  }
}

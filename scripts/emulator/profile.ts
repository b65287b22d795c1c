/**
 * Model profiles of the LM Studio emulator: what one emulated model is, and the ground truth a
 * profile implies ({@link profileTruth}). A profiles file is JSON: `{ "models": [Profile, ...] }`;
 * see {@link ModelProfile} for the fields and `validation.ts` for reading one.
 *
 * @module
 */

/** How a model answers the needle probe once the prompt is past its needle cliff. */
export type NeedleFailMode = "gibberish" | "wrong-number" | "empty";

/**
 * How LM Studio refuses a load above `loadFailAbove` (shared notes on LM Studio, section 1):
 * - `"guardrail"`: its memory estimate says no, in a fraction of a second, nothing loaded;
 * - `"engine"`: the weights are read, then the context cannot be made ("Failed to load model" /
 *   "Failed to initialize the context: …"): it costs about what a successful load costs;
 * - `"exit-code"`: the engine process dies with `(Exit code: 133). Please check settings and try
 *   loading the model again.`, no "failed to load" words at all; it costs a full load too.
 */
export type RefusalKind = "guardrail" | "engine" | "exit-code";

/** File format of a model as a profile states it; `"mlx"` is sent as `"safetensors"` on the wire. */
export type ProfileFormat = "gguf" | "mlx" | "safetensors";

/** Scripted faults of one model. Every list holds 1-based call numbers counted since start/reset. */
export interface ProfileFaults {
  /** Close the WebSocket abruptly on these loads of this model (nothing gets loaded). */
  dropOnLoad?: number[];
  /** Close the WebSocket abruptly on these predictions of this model. */
  dropOnPredict?: number[];
  /** Never answer these loads of this model (cancel is ignored too). */
  hangOnLoad?: number[];
  /** Never answer these predictions of this model (cancel is ignored too). */
  hangOnPredict?: number[];
  /** Never answer these `countTokens` calls on this model. */
  hangOnCountTokens?: number[];
}

/** Real wall-clock delays, so that a test can interrupt a call in flight. */
export interface ProfileRealDelay {
  /** Milliseconds a load takes for real (progress is streamed meanwhile). */
  load?: number;
  /** Milliseconds a prediction takes for real before its first fragment. */
  predict?: number;
}

/** The engine's memory shrinking after some loads (see {@link ModelProfile}). */
export interface ProfileShrink {
  /** Successful loads of the model after which it shrinks. */
  afterLoads: number;
  /** Loads above this size fail from then on. */
  loadFailAbove: number;
}

/**
 * One emulated model.
 *
 * Limits (all in tokens, all optional; absent means "no such limit"):
 * - `loadFailAbove`: a load asking for more context fails with LM Studio's guardrail text.
 * - `fitAbove`: a load asking for more succeeds, but is silently fitted to this context (MLX).
 * - `brokenAbove`: loaded above this context, every answer is gibberish (no digits).
 * - `needleFailAbove`: a needle prompt with more tokens than this is answered wrongly, as
 *   `needleFailMode` says; with `noisyBand`, prompts in `(needleFailAbove - noisyBand,
 *   needleFailAbove]` fail for a deterministic pseudo-random share of needles rising from 0 to 1.
 * - `crashAbove`: a prompt with more tokens than this kills the engine mid-prediction ("The model
 *   has crashed without additional information. (Exit code: …)"); the instance is gone after it.
 * A load asking for more than `declaredContext` fails.
 *
 * Behaviours (optional):
 * - `refusal`: how loads above `loadFailAbove` fail, and what that costs ({@link RefusalKind}).
 * - `noRuntime`: every load fails, at any size ("No LM Runtime found for model format …").
 * - `fitUpTo`: auto-fit raising a small request: a load asking for less than this succeeds at
 *   this context (`lms load -c 4096` loading 131072); asked and reported numbers differ upwards.
 * - `promptCache`: whether a prompt that extends the previous one on an instance pays only for
 *   its new tokens (default true; false for hybrid and sliding-window models, which reprocess
 *   the whole prompt).
 * - `cancelIgnored`: a cancelled load goes on to the end anyway and stays loaded, at a full
 *   load's cost and, where the load is paced (`realDelayMs.load`, `--time-scale`), at the time
 *   it would have ended (a server that does not honour the SDK's cancel; the client's promise is
 *   rejected all the same).
 * - `shrinks`: the engine's free memory shrinks as it goes: once `afterLoads` loads of the model
 *   have succeeded, every load above `loadFailAbove` fails after load progress, as llama.cpp's
 *   allocation failure does (a size that loaded once is refused on every later load).
 * - `prefillSlowdownTokens`: the depth at which attention has doubled the prefill cost of a
 *   token (default `TIMING.prefillSlowdownTokens`, 24,576): smaller on a machine slow at long
 *   prompts (a CPU or a laptop: at 8,192 a 7B prefills 190k tokens in 9 minutes, not 3.4).
 */
export interface ModelProfile {
  /** LM Studio model key, e.g. `"qwen2.5-7b-instruct"`. */
  modelKey: string;
  /** Human-readable name. */
  displayName: string;
  /** Path relative to the models folder, e.g. `"lmstudio-community/…/model-Q4_K_M.gguf"`. */
  path: string;
  /** Model domain. */
  type: "llm" | "embedding";
  /** File format. */
  format: ProfileFormat;
  /** Architecture, e.g. `"llama"`, `"qwen2"`. */
  architecture: string;
  /** Parameter count as LM Studio shows it, e.g. `"7B"`, `"137M"`. */
  paramsString: string;
  /** Quantization name, e.g. `"Q4_K_M"`, `"4bit"`, `"F16"`. */
  quantization: string;
  /** Size of the weights on disk, in bytes. */
  sizeBytes: number;
  /** Context length the model declares (`maxContextLength`). */
  declaredContext: number;
  /** Vision support flag reported by LM Studio (default false). */
  vision?: boolean;
  /** Tool-use flag reported by LM Studio (default false). */
  trainedForToolUse?: boolean;
  /** KV-cache bytes per token of context; default derived from the parameter count. */
  kvBytesPerToken?: number;
  /** See the interface doc. */
  loadFailAbove?: number;
  /** See the interface doc. */
  fitAbove?: number;
  /** See the interface doc. */
  brokenAbove?: number;
  /** See the interface doc. */
  needleFailAbove?: number;
  /** See the interface doc. */
  crashAbove?: number;
  /** See the interface doc; default `"guardrail"`. */
  refusal?: RefusalKind;
  /** See the interface doc. */
  noRuntime?: boolean;
  /** See the interface doc. */
  fitUpTo?: number;
  /** See the interface doc; default true. */
  promptCache?: boolean;
  /** See the interface doc. */
  cancelIgnored?: boolean;
  /** See the interface doc. */
  shrinks?: ProfileShrink;
  /** See the interface doc. */
  prefillSlowdownTokens?: number;
  /** Required when `needleFailAbove` is set. */
  needleFailMode?: NeedleFailMode;
  /** Width in tokens of the noisy band just below `needleFailAbove`. */
  noisyBand?: number;
  /** Scripted faults. */
  faults?: ProfileFaults;
  /** Real delays. */
  realDelayMs?: ProfileRealDelay;
  /** Free text: what this profile exercises. Ignored by the emulator. */
  notes?: string;
}

/**
 * The true limits a profile implies, to compare measured numbers against; all 0 for a model that
 * loads at no size (whose measured limits are null).
 */
export interface ProfileTruth {
  /** Largest context that loads and reports at least the asked size. */
  loadable: number;
  /** Largest context at which the needle probe passes (top of the noisy band). */
  working: number;
  /** Bottom of the noisy band (equals `working` without a band). */
  workingFloor: number;
}

/** The true limits of a profile: loadable, working, and the bottom of the noisy band. */
export function profileTruth(profile: ModelProfile): ProfileTruth {
  if (profile.noRuntime === true) return { loadable: 0, working: 0, workingFloor: 0 };
  const loadable = minOf(
    profile.declaredContext,
    profile.loadFailAbove,
    profile.fitAbove,
    // What loads once the engine shrank: the size a search that ends after it must report.
    profile.shrinks?.loadFailAbove,
  );
  const working = minOf(
    loadable,
    profile.brokenAbove,
    profile.needleFailAbove,
    profile.crashAbove,
  );
  const band = profile.noisyBand ?? 0;
  // The band only lowers the floor when the needle cliff is what sets the working context.
  const bandApplies = profile.needleFailAbove !== undefined && working === profile.needleFailAbove;
  return { loadable, working, workingFloor: bandApplies ? working - band : working };
}

function minOf(first: number, ...rest: (number | undefined)[]): number {
  let result = first;
  for (const value of rest) {
    if (value !== undefined && value < result) result = value;
  }
  return result;
}

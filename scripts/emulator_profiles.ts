/**
 * Model profiles for the LM Studio emulator, and everything the emulator, its tests and the bench
 * share: the profile types and their validation, the ground truth a profile implies
 * ({@link profileTruth}), the emulator's deterministic tokenizer, the needle-answer rules, and the
 * virtual clock with its timing constants.
 *
 * A profiles file is JSON: `{ "models": [Profile, ...] }`. See {@link ModelProfile} for the fields.
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------
// Profile types
// ---------------------------------------------------------------------------------------------

/** How a model answers the needle probe once the prompt is past its needle cliff. */
export type NeedleFailMode = "gibberish" | "wrong-number" | "empty";

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
 * A load asking for more than `declaredContext` fails.
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

/** The true limits a profile implies, to compare measured numbers against. */
export interface ProfileTruth {
  /** Largest context that loads and reads back unchanged. */
  loadable: number;
  /** Largest context at which the needle probe passes (top of the noisy band). */
  working: number;
  /** Bottom of the noisy band (equals `working` without a band). */
  workingFloor: number;
}

/** The true limits of a profile: loadable, working, and the bottom of the noisy band. */
export function profileTruth(profile: ModelProfile): ProfileTruth {
  const loadable = minOf(
    profile.declaredContext,
    profile.loadFailAbove,
    profile.fitAbove,
  );
  const working = minOf(loadable, profile.brokenAbove, profile.needleFailAbove);
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

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/** Thrown when a profiles document is malformed; the message names the offending field. */
export class ProfileError extends Error {
  /** Creates the error with a message naming the field. */
  constructor(message: string) {
    super(message);
    this.name = "ProfileError";
  }
}

const PROFILE_KEYS = new Set([
  "modelKey",
  "displayName",
  "path",
  "type",
  "format",
  "architecture",
  "paramsString",
  "quantization",
  "sizeBytes",
  "declaredContext",
  "vision",
  "trainedForToolUse",
  "kvBytesPerToken",
  "loadFailAbove",
  "fitAbove",
  "brokenAbove",
  "needleFailAbove",
  "needleFailMode",
  "noisyBand",
  "faults",
  "realDelayMs",
  "notes",
]);
const FAULT_KEYS = new Set([
  "dropOnLoad",
  "dropOnPredict",
  "hangOnLoad",
  "hangOnPredict",
  "hangOnCountTokens",
]);
const DELAY_KEYS = new Set(["load", "predict"]);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkKeys(value: Record<string, unknown>, allowed: Set<string>, where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) throw new ProfileError(`${where}: unknown field "${key}"`);
  }
}

function requireString(value: Record<string, unknown>, key: string, where: string): string {
  const field = value[key];
  if (typeof field !== "string" || field.length === 0) {
    throw new ProfileError(`${where}: "${key}" must be a non-empty string`);
  }
  return field;
}

function optionalPositiveInt(
  value: Record<string, unknown>,
  key: string,
  where: string,
): number | undefined {
  const field = value[key];
  if (field === undefined) return undefined;
  if (typeof field !== "number" || !Number.isSafeInteger(field) || field < 1) {
    throw new ProfileError(`${where}: "${key}" must be a positive integer, got ${String(field)}`);
  }
  return field;
}

function requirePositiveInt(value: Record<string, unknown>, key: string, where: string): number {
  const field = optionalPositiveInt(value, key, where);
  if (field === undefined) throw new ProfileError(`${where}: "${key}" is required`);
  return field;
}

function optionalBoolean(
  value: Record<string, unknown>,
  key: string,
  where: string,
): boolean | undefined {
  const field = value[key];
  if (field === undefined) return undefined;
  if (typeof field !== "boolean") throw new ProfileError(`${where}: "${key}" must be a boolean`);
  return field;
}

function optionalIntList(
  value: Record<string, unknown>,
  key: string,
  where: string,
): number[] | undefined {
  const field = value[key];
  if (field === undefined) return undefined;
  if (
    !Array.isArray(field) ||
    !field.every((k) => typeof k === "number" && Number.isSafeInteger(k) && k >= 1)
  ) {
    throw new ProfileError(`${where}: "${key}" must be a list of positive integers`);
  }
  return field as number[];
}

/** Checks one profile object and returns it typed; throws {@link ProfileError} when malformed. */
export function validateProfile(value: unknown, where = "profile"): ModelProfile {
  if (!isRecord(value)) throw new ProfileError(`${where}: must be an object`);
  checkKeys(value, PROFILE_KEYS, where);
  const modelKey = requireString(value, "modelKey", where);
  where = `${where} "${modelKey}"`;
  const type = value.type;
  if (type !== "llm" && type !== "embedding") {
    throw new ProfileError(`${where}: "type" must be "llm" or "embedding"`);
  }
  const format = value.format;
  if (format !== "gguf" && format !== "mlx" && format !== "safetensors") {
    throw new ProfileError(`${where}: "format" must be "gguf", "mlx" or "safetensors"`);
  }
  const profile: ModelProfile = {
    modelKey,
    displayName: requireString(value, "displayName", where),
    path: requireString(value, "path", where),
    type,
    format,
    architecture: requireString(value, "architecture", where),
    paramsString: requireString(value, "paramsString", where),
    quantization: requireString(value, "quantization", where),
    sizeBytes: requirePositiveInt(value, "sizeBytes", where),
    declaredContext: requirePositiveInt(value, "declaredContext", where),
  };
  const vision = optionalBoolean(value, "vision", where);
  if (vision !== undefined) profile.vision = vision;
  const toolUse = optionalBoolean(value, "trainedForToolUse", where);
  if (toolUse !== undefined) profile.trainedForToolUse = toolUse;
  for (
    const key of [
      "kvBytesPerToken",
      "loadFailAbove",
      "fitAbove",
      "brokenAbove",
      "needleFailAbove",
      "noisyBand",
    ] as const
  ) {
    const limit = optionalPositiveInt(value, key, where);
    if (limit !== undefined) profile[key] = limit;
  }
  const mode = value.needleFailMode;
  if (mode !== undefined) {
    if (mode !== "gibberish" && mode !== "wrong-number" && mode !== "empty") {
      throw new ProfileError(
        `${where}: "needleFailMode" must be "gibberish", "wrong-number" or "empty"`,
      );
    }
    profile.needleFailMode = mode;
  }
  if (profile.needleFailAbove !== undefined && profile.needleFailMode === undefined) {
    throw new ProfileError(`${where}: "needleFailMode" is required with "needleFailAbove"`);
  }
  if (profile.noisyBand !== undefined) {
    if (profile.needleFailAbove === undefined) {
      throw new ProfileError(`${where}: "noisyBand" needs "needleFailAbove"`);
    }
    if (profile.noisyBand >= profile.needleFailAbove) {
      throw new ProfileError(`${where}: "noisyBand" must be smaller than "needleFailAbove"`);
    }
  }
  if (value.notes !== undefined) {
    if (typeof value.notes !== "string") throw new ProfileError(`${where}: "notes" must be text`);
    profile.notes = value.notes;
  }
  if (value.faults !== undefined) {
    const faults = value.faults;
    if (!isRecord(faults)) throw new ProfileError(`${where}: "faults" must be an object`);
    checkKeys(faults, FAULT_KEYS, `${where} faults`);
    const parsed: ProfileFaults = {};
    for (const key of FAULT_KEYS) {
      const list = optionalIntList(faults, key, `${where} faults`);
      if (list !== undefined) parsed[key as keyof ProfileFaults] = list;
    }
    profile.faults = parsed;
  }
  if (value.realDelayMs !== undefined) {
    const delay = value.realDelayMs;
    if (!isRecord(delay)) throw new ProfileError(`${where}: "realDelayMs" must be an object`);
    checkKeys(delay, DELAY_KEYS, `${where} realDelayMs`);
    const parsed: ProfileRealDelay = {};
    const load = optionalPositiveInt(delay, "load", `${where} realDelayMs`);
    if (load !== undefined) parsed.load = load;
    const predict = optionalPositiveInt(delay, "predict", `${where} realDelayMs`);
    if (predict !== undefined) parsed.predict = predict;
    profile.realDelayMs = parsed;
  }
  return profile;
}

/** Checks a whole profiles document (`{ "models": [...] }`); model keys must be unique. */
export function validateProfiles(document: unknown): ModelProfile[] {
  if (!isRecord(document) || !Array.isArray(document.models)) {
    throw new ProfileError('profiles: expected an object with a "models" list');
  }
  const profiles = document.models.map((entry, index) =>
    validateProfile(entry, `models[${index}]`)
  );
  const seen = new Set<string>();
  for (const profile of profiles) {
    if (seen.has(profile.modelKey)) {
      throw new ProfileError(`profiles: model key "${profile.modelKey}" appears twice`);
    }
    seen.add(profile.modelKey);
  }
  return profiles;
}

/** Reads and validates a profiles JSON file. */
export async function readProfilesFile(path: string | URL): Promise<ModelProfile[]> {
  const text = await Deno.readTextFile(path);
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new ProfileError(`profiles: "${String(path)}" is not JSON: ${(error as Error).message}`);
  }
  return validateProfiles(document);
}

/** URL of the demo fleet shipped next to this file. */
export const DEMO_FLEET_URL: URL = new URL("./demo_fleet.json", import.meta.url);

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

function isAsciiLetter(code: number): boolean {
  return (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
}

/**
 * End index of the token that starts at `start`. The single rule of the emulator's tokenizer:
 * a run of ASCII letters, optionally led by one space, is one token; every other character (each
 * digit, each other space, each symbol, each surrogate pair) is one token.
 */
export function tokenEnd(text: string, start: number): number {
  const length = text.length;
  let i = start;
  let code = text.charCodeAt(i);
  if (code === 32 && i + 1 < length && isAsciiLetter(text.charCodeAt(i + 1))) {
    i++;
    code = text.charCodeAt(i);
  }
  if (isAsciiLetter(code)) {
    i++;
    while (i < length && isAsciiLetter(text.charCodeAt(i))) i++;
    return i;
  }
  if (code >= 0xd800 && code <= 0xdbff && i + 1 < length) {
    const next = text.charCodeAt(i + 1);
    if (next >= 0xdc00 && next <= 0xdfff) return i + 2;
  }
  return i + 1;
}

/** Number of tokens in `text` (fast: about a millisecond per 100k tokens). */
export function countTokens(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i = tokenEnd(text, i)) count++;
  return count;
}

/** The tokens of `text` as strings; joined, they give back `text`. */
export function tokenPieces(text: string): string[] {
  const pieces: string[] = [];
  for (let i = 0; i < text.length;) {
    const end = tokenEnd(text, i);
    pieces.push(text.slice(i, end));
    i = end;
  }
  return pieces;
}

/** Vocabulary size of the emulated tokenizer: token ids are below this. */
export const VOCAB_SIZE = 151_936;

/** Token ids of `text`: a stable hash of each token's text into the vocabulary. */
export function tokenize(text: string): number[] {
  const ids: number[] = [];
  for (let i = 0; i < text.length;) {
    const end = tokenEnd(text, i);
    let hash = 0x811c9dc5;
    for (let j = i; j < end; j++) {
      hash = Math.imul(hash ^ text.charCodeAt(j), 0x01000193);
    }
    ids.push((hash >>> 0) % VOCAB_SIZE);
    i = end;
  }
  return ids;
}

/**
 * Number of leading tokens of `next` that a cache holding `previous` can reuse: the tokens of
 * `next` that end strictly inside the common character prefix (the character after a token
 * decides where it ends, so it must be shared too).
 */
export function cachedPrefixTokens(previous: string, next: string): number {
  const limit = Math.min(previous.length, next.length);
  let common = 0;
  while (common < limit && previous.charCodeAt(common) === next.charCodeAt(common)) common++;
  // Like llama.cpp, the last prompt token is always evaluated again (its logits are needed).
  let count = 0;
  for (let i = 0; i < next.length;) {
    const end = tokenEnd(next, i);
    if (end >= common || end === next.length) break;
    count++;
    i = end;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/** What kind of prompt a prediction was: the needle probe, the `2+2=` sanity check, or other. */
export type PromptKind = "needle" | "sanity" | "other";

/** The emulator's reading of a prompt. */
export interface PromptReading {
  /** Kind of prompt. */
  kind: PromptKind;
  /** Needle key asked about (needle prompts only). */
  key?: string;
  /** The value of that key's needle in the prompt, if the prompt holds one. */
  value?: string;
}

const QUESTION_RE =
  /What is the special magic number for ([a-z]+(?:-[a-z]+)*) mentioned in the provided text\?/g;

/** Classifies a prompt and, for a needle prompt, finds the asked key and its needle's value. */
export function readPrompt(prompt: string): PromptReading {
  let key: string | undefined;
  for (const match of prompt.matchAll(QUESTION_RE)) key = match[1];
  if (key !== undefined) {
    const needle = `One of the special magic numbers for ${key} is: `;
    const at = prompt.lastIndexOf(needle);
    if (at >= 0) {
      const digits = /^(\d+)\./.exec(prompt.slice(at + needle.length, at + needle.length + 40));
      if (digits?.[1] !== undefined) return { kind: "needle", key, value: digits[1] };
    }
    return { kind: "needle", key };
  }
  if (prompt.trimEnd().endsWith("2+2=")) return { kind: "sanity" };
  return { kind: "other" };
}

/** 32-bit FNV-1a hash of a string, used wherever the emulator needs deterministic noise. */
export function hash32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

const SYLLABLES = [
  "ka",
  "lor",
  "vin",
  "tes",
  "mo",
  "quor",
  "bel",
  "zin",
  "dra",
  "pul",
  "sen",
  "tho",
  "rix",
  "gam",
  "el",
  "nu",
];

/** Deterministic gibberish of about `tokens` tokens, with no digits, seeded by `seed`. */
export function gibberish(seed: string, tokens: number): string {
  let state = hash32(seed) || 1;
  const words: string[] = [];
  for (let i = 0; i < Math.max(1, tokens); i++) {
    let word = "";
    const syllables = 1 + (state % 3);
    for (let s = 0; s < syllables; s++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      word += SYLLABLES[(state >>> 16) % SYLLABLES.length];
    }
    words.push(i % 9 === 8 ? `${word},` : word);
  }
  return " " + words.join(" ");
}

/** A 7-digit number, derived from `seed`, that differs from `avoid`. */
export function wrongNumber(seed: string, avoid?: string): string {
  let candidate = 1_000_000 + (hash32(seed) % 9_000_000);
  if (String(candidate) === avoid) candidate = candidate === 9_999_999 ? 1_000_000 : candidate + 1;
  return String(candidate);
}

/**
 * Whether a needle inside the noisy band fails: a deterministic share of (key, value, prompt
 * length) triples that rises from 0 at the band's bottom to 1 at `needleFailAbove`.
 */
export function failsInNoisyBand(
  profile: ModelProfile,
  key: string,
  value: string,
  promptTokens: number,
): boolean {
  const cliff = profile.needleFailAbove;
  const band = profile.noisyBand;
  if (cliff === undefined || band === undefined) return false;
  const bottom = cliff - band;
  if (promptTokens <= bottom || promptTokens > cliff) return false;
  const share = (promptTokens - bottom) / band;
  return hash32(`${key}|${value}|${promptTokens}`) / 2 ** 32 < share;
}

/** The answer text a profile gives (before `maxPredictedTokens` truncation), and its grade. */
export interface EmulatedAnswer {
  /** Full answer text. */
  text: string;
  /** Prompt kind. */
  kind: PromptKind;
  /** Whether a perfect grader would accept it (null for "other" prompts). */
  correct: boolean | null;
}

/** Decides what the model of `profile`, loaded at `loadedContext`, answers to `prompt`. */
export function emulatedAnswer(
  profile: ModelProfile,
  loadedContext: number,
  prompt: string,
  promptTokens: number,
): EmulatedAnswer {
  const reading = readPrompt(prompt);
  const seed = `${profile.modelKey}|${promptTokens}|${reading.key ?? ""}`;
  if (profile.brokenAbove !== undefined && loadedContext > profile.brokenAbove) {
    return {
      text: gibberish(seed, 24),
      kind: reading.kind,
      correct: reading.kind === "other" ? null : false,
    };
  }
  if (reading.kind === "sanity") return { text: " 4", kind: "sanity", correct: true };
  if (reading.kind === "other") {
    return { text: " Sure. Here is a short answer to your request.", kind: "other", correct: null };
  }
  const key = reading.key ?? "";
  const value = reading.value;
  if (value === undefined) {
    return { text: ` ${wrongNumber(seed)}.`, kind: "needle", correct: false };
  }
  const pastCliff = profile.needleFailAbove !== undefined &&
    promptTokens > profile.needleFailAbove;
  if (pastCliff || failsInNoisyBand(profile, key, value, promptTokens)) {
    switch (profile.needleFailMode ?? "wrong-number") {
      case "gibberish":
        return { text: gibberish(seed, 20), kind: "needle", correct: false };
      case "empty":
        return { text: "", kind: "needle", correct: false };
      case "wrong-number":
        return { text: ` ${wrongNumber(seed, value)}.`, kind: "needle", correct: false };
    }
  }
  return { text: ` ${value}.`, kind: "needle", correct: true };
}

// ---------------------------------------------------------------------------------------------
// Virtual clock and timing model
// ---------------------------------------------------------------------------------------------

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
  /** Unloading, ms. */
  unloadMs: 250,
  /** Prompt processing speed of a 7B model at position 0, tokens/s. */
  prefillTokensPerSec7B: 4500,
  /** Position at which attention has doubled the per-token prefill cost, tokens. */
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

function speedScale(profile: ModelProfile): number {
  return Math.min(40, Math.max(0.05, 7 / paramsBillions(profile)));
}

/**
 * Virtual time to prefill positions `[from, to)`, ms. The cost of a token at position p is
 * `(1 + p / prefillSlowdownTokens) / speed`; this is its integral.
 */
export function prefillMs(profile: ModelProfile, from: number, to: number): number {
  if (to <= from) return 0;
  const speed = TIMING.prefillTokensPerSec7B * speedScale(profile) / 1000;
  const k = TIMING.prefillSlowdownTokens;
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

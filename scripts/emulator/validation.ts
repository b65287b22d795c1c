/**
 * Reading and checking profiles files for the LM Studio emulator.
 *
 * @module
 */

import type { ModelProfile, ProfileFaults, ProfileRealDelay } from "./profile.ts";

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
  "crashAbove",
  "refusal",
  "noRuntime",
  "fitUpTo",
  "promptCache",
  "cancelIgnored",
  "shrinks",
  "prefillSlowdownTokens",
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
      "crashAbove",
      "fitUpTo",
      "prefillSlowdownTokens",
    ] as const
  ) {
    const limit = optionalPositiveInt(value, key, where);
    if (limit !== undefined) profile[key] = limit;
  }
  const refusal = value.refusal;
  if (refusal !== undefined) {
    if (refusal !== "guardrail" && refusal !== "engine" && refusal !== "exit-code") {
      throw new ProfileError(`${where}: "refusal" must be "guardrail", "engine" or "exit-code"`);
    }
    profile.refusal = refusal;
  }
  const noRuntime = optionalBoolean(value, "noRuntime", where);
  if (noRuntime !== undefined) profile.noRuntime = noRuntime;
  const promptCache = optionalBoolean(value, "promptCache", where);
  if (promptCache !== undefined) profile.promptCache = promptCache;
  const cancelIgnored = optionalBoolean(value, "cancelIgnored", where);
  if (cancelIgnored !== undefined) profile.cancelIgnored = cancelIgnored;
  const shrinks = value.shrinks;
  if (shrinks !== undefined) {
    const at = `${where}.shrinks`;
    if (!isRecord(shrinks)) throw new ProfileError(`${at}: must be an object`);
    const extra = Object.keys(shrinks).find((k) => k !== "afterLoads" && k !== "loadFailAbove");
    if (extra !== undefined) throw new ProfileError(`${at}: unknown field "${extra}"`);
    const afterLoads = optionalPositiveInt(shrinks, "afterLoads", at);
    const loadFailAbove = optionalPositiveInt(shrinks, "loadFailAbove", at);
    if (afterLoads === undefined || loadFailAbove === undefined) {
      throw new ProfileError(`${at}: needs "afterLoads" and "loadFailAbove"`);
    }
    profile.shrinks = { afterLoads, loadFailAbove };
  }
  if (profile.fitUpTo !== undefined && profile.fitUpTo > profile.declaredContext) {
    throw new ProfileError(`${where}: "fitUpTo" must not exceed "declaredContext"`);
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

/** URL of the demo fleet, `scripts/demo_fleet.json`. */
export const DEMO_FLEET_URL: URL = new URL("../demo_fleet.json", import.meta.url);

/**
 * What an emulated model answers: reading a prompt, and the needle and sanity rules of a profile.
 *
 * @module
 */

import type { ModelProfile } from "./profile.ts";

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

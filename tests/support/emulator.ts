/**
 * Test helpers around the LM Studio emulator: build a small test profile, run a test body against
 * an emulator on a free port (always closed afterwards), read the demo fleet, a logger that keeps the SDK quiet, a way to read
 * SDK error text without its box and colours, a bounded wait, and a needle prompt builder sized in
 * the emulator's tokens.
 *
 * @module
 */

import {
  type Emulator,
  type EmulatorOptions,
  startEmulator,
} from "../../scripts/emulator/server.ts";
import type { ModelProfile } from "../../scripts/emulator/profile.ts";
import { countTokens } from "../../scripts/emulator/tokenizer.ts";
import { DEMO_FLEET_URL, readProfilesFile } from "../../scripts/emulator/validation.ts";

/**
 * An LLM profile named `modelKey` (a 7B Q4_K_M GGUF llama of 4 GB, 16k declared) with the fields a
 * test leaves alone filled in; `extra` sets the fields the test is about.
 */
export function testProfile(modelKey: string, extra: Partial<ModelProfile> = {}): ModelProfile {
  return {
    modelKey,
    displayName: modelKey,
    path: `test/${modelKey}/${modelKey}-Q4_K_M.gguf`,
    type: "llm",
    format: "gguf",
    architecture: "llama",
    paramsString: "7B",
    quantization: "Q4_K_M",
    sizeBytes: 4_000_000_000,
    declaredContext: 16384,
    ...extra,
  };
}

/**
 * Starts an emulator serving `profiles` on a free port, runs `fn`, and always closes it;
 * `options` sets the emulator's other options (pacing, the cancel hold).
 */
export async function withEmulator<T>(
  profiles: ModelProfile[],
  fn: (emulator: Emulator) => Promise<T>,
  options: Omit<EmulatorOptions, "profiles" | "port"> = {},
): Promise<T> {
  const emulator = await startEmulator({ ...options, profiles, port: 0 });
  try {
    return await fn(emulator);
  } finally {
    await emulator.close();
  }
}

/** The profiles of scripts/demo_fleet.json. */
export function loadFleet(): Promise<ModelProfile[]> {
  return readProfilesFile(DEMO_FLEET_URL);
}

/** A logger for `new LMStudioClient({ logger })` that swallows everything. */
export const quietLogger = {
  debug: (..._args: unknown[]): void => {},
  info: (..._args: unknown[]): void => {},
  warn: (..._args: unknown[]): void => {},
  error: (..._args: unknown[]): void => {},
};

/**
 * The text of an error without ANSI colours, box-drawing characters and line wrapping, so that a
 * test can match LM Studio's wording whatever the terminal width.
 */
export function plainErrorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message
    // deno-lint-ignore no-control-regex
    .replace(/\u001b\[[0-9;]*m/g, "")
    .replace(/[\u2500-\u257f]/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

/** Thrown by {@link within} when the wait runs out. */
export class TimedOut extends Error {}

/**
 * Waits for `promise` at most `ms` milliseconds; rejects with {@link TimedOut} after that. The
 * losing promise's later rejection is swallowed so it cannot fail the test run.
 */
export function within<T>(promise: Promise<T>, ms: number, what = "call"): Promise<T> {
  promise.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimedOut(`${what} did not settle in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Options of {@link needlePrompt}. */
export interface NeedlePromptOptions {
  /** Needle key: lowercase words joined by hyphens. */
  key: string;
  /** Needle value: a 7-digit number. */
  value: string;
  /** Exact size of the prompt in the emulator's tokens. */
  tokens: number;
  /** Leave the needle out (the question still asks for `key`). */
  withoutNeedle?: boolean;
}

/**
 * A needle-probe prompt in the contract's format, exactly `tokens` tokens long: filler, the needle
 * in the middle, then the question and the answer prefix.
 */
export function needlePrompt(options: NeedlePromptOptions): string {
  const { key, value, tokens } = options;
  const needle = options.withoutNeedle
    ? ""
    : ` One of the special magic numbers for ${key} is: ${value}.`;
  const tail = `\nWhat is the special magic number for ${key} mentioned in the provided text?\n` +
    `The special magic number for ${key} mentioned in the provided text is`;
  const sentence = " The grass is green and the sky is blue."; // 10 tokens
  const fixed = countTokens(needle) + countTokens(tail);
  let filler = tokens - fixed;
  if (filler < 0) throw new Error(`a needle prompt needs at least ${fixed} tokens`);
  const units: string[] = [];
  while (filler >= 10) {
    units.push(sentence);
    filler -= 10;
  }
  const half = Math.floor(units.length / 2);
  const prompt = units.slice(0, half).join("") + needle + units.slice(half).join("") +
    " so".repeat(filler) + tail;
  return prompt;
}

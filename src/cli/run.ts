/**
 * `lmstrix run <model> [--file F | PROMPT]`: the answer streams to stdout as LM Studio sends it
 * (control characters shown escaped, newlines and tabs kept), what the run is doing and LM
 * Studio's statistics go to stderr; `--json` prints one document at the end instead.
 */

import { UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import type { LMStrix, RunResult } from "../lmstrix.ts";
import { displayText, type Output } from "../output.ts";
import { pathFailure } from "./file_errors.ts";

/** Options of `run` as the command line gives them. */
export interface RunCommandOptions {
  file?: string;
  maxTokens?: number;
  temperature?: number;
}

/** The largest `--temperature` taken: past it sampling is noise whatever the model. */
const MAX_TEMPERATURE = 10;

/** Parses `--temperature`: a number from 0 to 10. */
export function parseTemperature(value: string): number {
  const amount = /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(amount) || amount > MAX_TEMPERATURE) {
    throw new UsageError(
      `--temperature must be a number from 0 to ${MAX_TEMPERATURE}, not "${value}"`,
    );
  }
  return amount;
}

// deno-lint-ignore no-control-regex
const UNSAFE_IN_ANSWER = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** An answer's text made safe for a terminal: escapes shown, newlines and tabs kept. */
export function answerText(text: string): string {
  return text.replace(UNSAFE_IN_ANSWER, (c) => displayText(c));
}

/** Reads the prompt: the argument, the file, or stdin for `--file -`. */
async function readPrompt(prompt: string | undefined, file: string | undefined): Promise<string> {
  if (prompt !== undefined && file !== undefined) {
    throw new UsageError("Give the prompt as an argument or with --file, not both");
  }
  if (prompt === undefined && file === undefined) {
    throw new UsageError("Give a prompt: as an argument, or with --file (- reads stdin)", {
      hint: 'e.g. lmstrix run qwen "Summarise this:" or lmstrix run qwen --file notes.txt',
    });
  }
  let text = prompt ?? "";
  if (file !== undefined) {
    try {
      text = file === "-"
        ? await new Response(Deno.stdin.readable).text()
        : await Deno.readTextFile(file);
    } catch (error) {
      const why = pathFailure(error, [
        [Deno.errors.NotFound, "no such file"],
        [Deno.errors.PermissionDenied, "permission denied"],
        [Deno.errors.IsADirectory, "it is a directory"],
      ]);
      if (why === null) throw error;
      throw new UsageError(`Cannot read the prompt from "${file}": ${why}`);
    }
  }
  if (text.trim() === "") throw new UsageError("The prompt is empty");
  return text;
}

/** LM Studio's statistics in one line: tokens, speed, why it stopped. */
function statsLine(result: RunResult): string {
  const s = result.stats;
  const parts = [`${result.promptTokens.toLocaleString("en-US")} prompt tokens`];
  if (typeof s.predictedTokensCount === "number") {
    parts.push(`${s.predictedTokensCount.toLocaleString("en-US")} answer tokens`);
  }
  if (typeof s.tokensPerSecond === "number") parts.push(`${s.tokensPerSecond.toFixed(1)} tok/s`);
  if (typeof s.timeToFirstTokenSec === "number") {
    parts.push(`first token after ${s.timeToFirstTokenSec.toFixed(2)} s`);
  }
  if (typeof s.stopReason === "string") parts.push(`stopped: ${s.stopReason}`);
  return `${result.id} at ${result.context.toLocaleString("en-US")}: ${parts.join(", ")}`;
}

/** Runs `run`. */
export async function runRun(
  lmstrix: LMStrix,
  output: Output,
  model: string,
  prompt: string | undefined,
  options: RunCommandOptions,
  signal: AbortSignal,
): Promise<number> {
  const text = await readPrompt(prompt, options.file);
  let ended = true;
  const result = await lmstrix.run(model, {
    prompt: text,
    maxTokens: options.maxTokens,
    temperature: options.temperature,
    signal,
    onProgress: (message) => output.progress(`${displayText(message)}...`),
    ...(output.json ? {} : {
      onText: (fragment: string) => {
        if (fragment === "") return;
        output.stdout.write(answerText(fragment));
        ended = fragment.endsWith("\n");
      },
    }),
  });
  if (output.json) {
    output.document(result);
  } else if (!ended) {
    output.stdout.write("\n");
  }
  output.info(statsLine(result));
  return ExitCode.ok;
}

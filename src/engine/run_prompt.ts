/**
 * `run`: one prompt to a model at its tested working context. The model is loaded at that
 * context (the number LMStrix measured it works at), the prompt counted with the model's own
 * tokenizer and refused when it is longer than the test showed working, else completed with the
 * answer streamed as it comes; the instance is unloaded whatever happens, an interrupt included.
 *
 * Its instances are named `lmstrix-run-…`, not after the home as a test's are: a test that starts
 * meanwhile clears its own home's leftovers, and must leave a live run's instance alone (it warns
 * that another LMStrix run holds one instead).
 *
 * @module
 */

import { RESERVE_TOKENS } from "../contract.ts";
import { LmstrixError, UsageError } from "../errors.ts";
import { INSTANCE_PREFIX, type LmStudio, type LoadedModel } from "../lmstudio/client.ts";
import { LmStudioCallError } from "../lmstudio/failures.ts";
import { newRunId } from "../probe/lmstudio_probe.ts";
import type { ModelRecord } from "../registry/model_record.ts";

/** What to run and how. */
export interface RunRequest {
  /** The prompt, sent as it is (a raw completion, as the needle probe is). */
  prompt: string;
  /** At most this many new tokens (default: until the model stops or the context is full). */
  maxTokens?: number | undefined;
  /** Sampling temperature (default: 0, the deterministic answer). */
  temperature?: number | undefined;
  /** Stops the run; the instance is unloaded first. */
  signal?: AbortSignal | undefined;
  /** Told each fragment of the answer as it arrives. */
  onText?: ((text: string) => void) | undefined;
  /** Told what the run is doing (loading, counting, predicting), for progress. */
  onProgress?: ((message: string) => void) | undefined;
}

/** What a run produced, as in `run --json`. */
export interface RunResult {
  id: string;
  /** The context the model was loaded with. */
  context: number;
  /** The prompt's length, counted with the model's tokenizer. */
  promptTokens: number;
  /** The whole answer. */
  text: string;
  /** LM Studio's statistics of the prediction (`stopReason`, `tokensPerSecond`, counts, ...). */
  stats: Record<string, unknown>;
}

/** A prompt longer than the model's tested working context leaves room for (exit 2). */
export class PromptTooLongError extends UsageError {
  /** The prompt's length in the model's tokens. */
  readonly promptTokens: number;
  /** The longest prompt the model was shown to work with. */
  readonly limit: number;
  /** Tested models whose working context would hold it (by this model's count). */
  readonly fits: string[];

  /** Creates the error for a prompt of `promptTokens` on `id`, limited to `limit`. */
  constructor(id: string, working: number, promptTokens: number, fits: string[]) {
    const limit = working - RESERVE_TOKENS;
    const fmt = (n: number) => n.toLocaleString("en-US");
    const shown = fits.slice(0, 5).map((f) => `"${f}"`).join(", ") +
      (fits.length > 5 ? ` and ${fits.length - 5} more` : "");
    super(
      `The prompt has ${fmt(promptTokens)} tokens; "${id}" works with at most ${fmt(limit)} ` +
        `(its working context of ${fmt(working)} less ${RESERVE_TOKENS} for the answer)`,
      {
        hint: fits.length > 0
          ? `it would fit ${shown} (counted with this model's tokenizer)`
          : "no tested model has a working context that long: shorten the prompt",
      },
    );
    this.promptTokens = promptTokens;
    this.limit = limit;
    this.fits = fits;
  }
}

/** LM Studio would not load the model at its working context (exit 1). */
export class RunLoadError extends LmstrixError {}

/** The smallest answer budget a run's deadline allows per token: 5 tokens a second. */
const SLOWEST_TOKEN_MS = 200;

/** The working context `run` loads `record` with; a model without one is a usage error. */
export function runContextOf(record: ModelRecord): number {
  if (record.status === "tested" && record.workingContext !== null) return record.workingContext;
  const fmt = (n: number | null) => n === null ? "none" : n.toLocaleString("en-US");
  throw new UsageError(
    `"${record.id}" has no tested working context (status ${record.status}; declared ` +
      `${fmt(record.declaredContext)}, loadable ${fmt(record.loadableContext)}, working ` +
      `${fmt(record.workingContext)})`,
    {
      hint: record.type === "embedding"
        ? "an embedding model does not complete prompts"
        : `run "lmstrix test ${record.id}" first`,
    },
  );
}

/**
 * Loads `record`'s model at its working context, counts the prompt, refuses one that is too long
 * (naming the models of `shelf` it would fit), else completes it; always unloads.
 */
export async function runPrompt(
  lms: LmStudio,
  record: ModelRecord,
  shelf: readonly ModelRecord[],
  request: RunRequest,
): Promise<RunResult> {
  const context = runContextOf(record);
  const fmt = (n: number) => n.toLocaleString("en-US");
  request.onProgress?.(`loading ${record.id} at ${fmt(context)} tokens`);
  const identifier = `${INSTANCE_PREFIX}run-${newRunId()}`;
  const options = { identifier, ...(request.signal ? { signal: request.signal } : {}) };
  let model: LoadedModel | undefined;
  try {
    const loaded = await lms.load(record.id, context, options);
    if (loaded.kind === "refused") {
      throw new RunLoadError(
        `LM Studio did not load "${record.id}" at its working context of ${fmt(context)}: ` +
          loaded.message,
        { hint: "unload other models to free memory, then run it again" },
      );
    }
    model = loaded.model;
    // Fitted down (MLX): the prompt must fit what it got.
    const limitContext = Math.min(context, loaded.actual);
    const promptTokens = await model.countTokens(request.prompt, request.signal);
    if (promptTokens > limitContext - RESERVE_TOKENS) {
      const fits = shelf
        .filter((r) => r.status === "tested" && r.workingContext !== null && r.id !== record.id)
        .filter((r) => r.workingContext! - RESERVE_TOKENS >= promptTokens)
        .sort((a, b) => a.workingContext! - b.workingContext!)
        .map((r) => r.id);
      throw new PromptTooLongError(record.id, limitContext, promptTokens, fits);
    }
    request.onProgress?.(`prompt of ${fmt(promptTokens)} tokens; answering`);
    const room = limitContext - promptTokens;
    const budget = Math.min(request.maxTokens ?? room, room);
    const completion = await model.complete(request.prompt, {
      maxTokens: request.maxTokens ?? false,
      promptTokens,
      temperature: request.temperature ?? 0,
      deadlineMs: 120_000 + promptTokens * 15 + budget * SLOWEST_TOKEN_MS,
      ...(request.signal ? { signal: request.signal } : {}),
      ...(request.onText ? { onText: request.onText } : {}),
    });
    return {
      id: record.id,
      context: loaded.actual,
      promptTokens,
      text: completion.text,
      stats: { ...completion.stats },
    };
  } finally {
    await unloadQuietly(lms, model, identifier, request.signal?.aborted ?? false);
  }
}

/**
 * How long a run stopped during its load watches for the load to land all the same, in ms: a
 * server that does not honour the cancel (the emulator's `cancelIgnored`) finishes the load
 * after the client gave up on it, and nothing else would unload a run's instance. Long enough
 * for a load that was about to finish; a second Ctrl-C quits at once.
 */
const LATE_LOAD_WATCH_MS = 1_500;
const LATE_LOAD_POLL_MS = 150;

/**
 * Unloads the run's instance; after an interrupt during the load, whatever the load left under
 * the run's identifier (watching a moment for a load the server finished all the same). Never
 * throws: LM Studio gone takes the instance with it.
 */
async function unloadQuietly(
  lms: LmStudio,
  model: LoadedModel | undefined,
  identifier: string,
  interrupted: boolean,
): Promise<void> {
  try {
    if (model !== undefined) {
      await model.unload();
      return;
    }
    const deadline = Date.now() + (interrupted ? LATE_LOAD_WATCH_MS : 0);
    for (;;) {
      const loaded = await lms.listLoaded();
      if (loaded.some((instance) => instance.identifier === identifier)) {
        await lms.unload(identifier);
        return;
      }
      if (Date.now() >= deadline) return;
      await new Promise((resolve) => setTimeout(resolve, LATE_LOAD_POLL_MS));
    }
  } catch (error) {
    if (error instanceof LmStudioCallError && error.kind === "not-found") return;
    try {
      await lms.unload(identifier);
    } catch {
      // Gone already, or LM Studio is: nothing is held.
    }
  }
}

/**
 * The errors LMStrix throws on purpose.
 *
 * Each class names one cause; `main.ts` maps the class to an exit code in one place, and library
 * users tell causes apart with `instanceof`. Messages are sentence case, quote the values involved
 * and say what failed and why; `hint` is one line saying what to do about it.
 *
 * @module
 */

/** How many candidate model ids a message names before it says "and N more". */
const MAX_NAMED_CANDIDATES = 10;

/** Options shared by every LMStrix error. */
export interface LmstrixErrorOptions {
  /** One line telling the user what to do. */
  hint?: string;
  /** The lower-level error that caused this one. */
  cause?: unknown;
}

/** Base class of every error LMStrix throws on purpose. */
export class LmstrixError extends Error {
  /** One line telling the user what to do, if there is something to say. */
  readonly hint: string | undefined;

  /** Creates an error with a message and an optional hint and cause. */
  constructor(message: string, options: LmstrixErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
  }
}

/** Bad command-line input: unknown flag, bad number, empty model name (exit code 2). */
export class UsageError extends LmstrixError {}

/** No model in the registry matches what the user asked for (exit code 2). */
export class ModelNotFoundError extends LmstrixError {
  /** What the user asked for. */
  readonly query: string;
  /** Model ids the user may have meant, best first (may be empty). */
  readonly candidates: string[];

  /** Creates the error for `query`, suggesting `candidates`. */
  constructor(query: string, candidates: string[], options: LmstrixErrorOptions = {}) {
    const suggestion = candidates.length > 0
      ? `; did you mean ${formatCandidates(candidates)}?`
      : "";
    super(`No model matches "${query}"${suggestion}`, {
      hint: 'run "lmstrix list" to see the model ids, or "lmstrix scan" to refresh them',
      ...options,
    });
    this.query = query;
    this.candidates = [...candidates];
  }
}

/**
 * The user's model name matches several models (exit code 2, like {@linkcode ModelNotFoundError},
 * of which it is a subclass: no single model was found).
 */
export class AmbiguousModelError extends ModelNotFoundError {
  /** Creates the error for `query`, which matches every id in `candidates`. */
  constructor(query: string, candidates: string[], options: LmstrixErrorOptions = {}) {
    super(query, candidates, {
      hint: "pass the full model id, or a part of it that only one model has",
      ...options,
    });
    this.message = `Model name "${query}" is ambiguous: it matches ${candidates.length} models: ${
      formatCandidates(candidates)
    }`;
  }
}

/** The registry (or the lmsm.json it would be imported from) cannot be read (exit code 2). */
export class RegistryError extends LmstrixError {
  /** The file that could not be read. */
  readonly path: string;

  /** Creates the error for the file at `path`. */
  constructor(message: string, options: LmstrixErrorOptions & { path: string }) {
    super(message, options);
    this.path = options.path;
  }
}

/** LM Studio does not answer at the server address (exit code 3). */
export class LmStudioUnreachableError extends LmstrixError {
  /** The server address that was tried, or a description of the discovery that failed. */
  readonly server: string;

  /** Creates the error for `server`; `reason` says why, e.g. "connection refused". */
  constructor(server: string, reason?: string, options: LmstrixErrorOptions = {}) {
    super(`Cannot reach LM Studio at "${server}"${reason ? `: ${reason}` : ""}`, {
      hint: 'start the server with "lms server start" or pass --server',
      ...options,
    });
    this.server = server;
  }
}

/**
 * LM Studio accepts connections but stopped answering calls (exit code 3, like an unreachable
 * server, of which it is a subclass).
 */
export class LmStudioNotAnsweringError extends LmStudioUnreachableError {
  /** Creates the error for `server`; `reason` names the call that went unanswered. */
  constructor(server: string, reason: string, options: LmstrixErrorOptions = {}) {
    super(server, reason, {
      hint: "progress is saved; check LM Studio (restart it if it hangs), then run the same " +
        "command again to resume",
      ...options,
    });
    this.message = `LM Studio at "${server}" stopped answering: ${reason}`;
  }
}

/**
 * LM Studio answered, but with a reply the SDK rejects and drops whole (exit code 3: the list
 * cannot be had). Seen when one model entry has a field of the wrong type.
 */
export class LmStudioReplyUnreadableError extends LmStudioUnreachableError {
  /** Creates the error for `server`; `reason` says which part of the reply is wrong. */
  constructor(server: string, reason: string, options: LmstrixErrorOptions = {}) {
    super(server, reason, {
      hint: 'find that model with "lms ls --json" (or in LM Studio\'s model list) and fix, ' +
        "re-download or remove it; an LM Studio update may also cure it",
      ...options,
    });
    this.message = `LM Studio's reply could not be read: ${reason}`;
  }
}

/** Another lmstrix run holds the lock on the registry (exit code 4). */
export class LockHeldError extends LmstrixError {
  /** Process id of the holder, or null when it could not be read. */
  readonly pid: number | null;
  /** When the holder took the lock (ISO 8601), or null when it could not be read. */
  readonly startedAt: string | null;
  /** The lock file. */
  readonly path: string;

  /** Creates the error for the holder of the lock file at `path`. */
  constructor(
    pid: number | null,
    startedAt: string | null,
    path: string,
    options: LmstrixErrorOptions = {},
  ) {
    const who = [
      pid === null ? undefined : `pid ${pid}`,
      startedAt === null ? undefined : `started ${startedAt}`,
    ].filter((part) => part !== undefined).join(", ");
    super(`Another lmstrix run${who ? ` (${who})` : ""} holds the lock "${path}"`, {
      hint: 'wait for it to finish; "lmstrix status" shows who holds the lock',
      ...options,
    });
    this.pid = pid;
    this.startedAt = startedAt;
    this.path = path;
  }
}

/**
 * A run was stopped by a signal after unloading what it loaded and saving its progress (exit
 * 130 for SIGINT, 143 for SIGTERM; see `exit_codes.ts`).
 */
export class InterruptedError extends LmstrixError {
  /** The signal that stopped the run, e.g. `"SIGINT"`. */
  readonly signal: string;

  /** Creates the error for `signal`. */
  constructor(signal: string, options: LmstrixErrorOptions = {}) {
    super(`Stopped by ${signal}; progress is saved and nothing is left loaded`, {
      hint: "run the same command again to resume where it stopped",
      ...options,
    });
    this.signal = signal;
  }
}

function formatCandidates(candidates: string[]): string {
  const named = candidates.slice(0, MAX_NAMED_CANDIDATES).map((id) => `"${id}"`).join(", ");
  const rest = candidates.length - MAX_NAMED_CANDIDATES;
  return rest > 0 ? `${named} and ${rest} more` : named;
}

/** The message of anything thrown: an error's own message, anything else as text. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

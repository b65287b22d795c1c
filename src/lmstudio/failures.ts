/**
 * Classifies what goes wrong when talking to LM Studio.
 *
 * The SDK reports every server-side failure as a plain `Error` whose message carries LM Studio's
 * title, cause and suggestion as text, so the kind is read from the text (and from `code` for
 * socket errors). Kept in one place so that new LM Studio wording needs one change.
 *
 * A load is judged by exclusion, not by wording ({@link isLoadRefusal}): LM Studio's engines fail
 * with texts nobody can list in advance (`(Exit code: 133). Please check settings…` carries no
 * "failed to load" at all), so every failure of a load that is not the connection's, the clock's,
 * an unknown model or our own abort means "this size did not load", and its text goes to the log.
 */

/** What kind of failure a call met. */
export type FailureKind =
  /** Nothing listens at the address (or the name does not resolve). */
  | "unreachable"
  /** The socket closed while the call was in flight; the client reconnects on its next call. */
  | "connection-lost"
  /** LMStrix's own deadline for the call passed. */
  | "timeout"
  /** LM Studio refused the load: not enough memory under its guardrails, or the engine failed. */
  | "refused"
  /** The model key or instance does not exist on the server. */
  | "not-found"
  /** The prompt did not fit the loaded context. */
  | "context-overflow"
  /** The engine died during the call (the instance is gone with it). */
  | "crashed"
  /** The caller aborted the call (an interrupt). */
  | "aborted"
  /** Anything else. */
  | "other";

/** A failed call to LM Studio, with its kind and the call it happened in. */
export class LmStudioCallError extends Error {
  /** What kind of failure this was. */
  readonly kind: FailureKind;
  /** The adapter call that failed, e.g. `"load"`. */
  readonly call: string;

  /** Wraps `cause` from `call` with its classification. */
  constructor(call: string, kind: FailureKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LmStudioCallError";
    this.kind = kind;
    this.call = call;
  }

  /** True for failures worth retrying: the connection dropped, or the call hung. */
  get transient(): boolean {
    return this.kind === "connection-lost" || this.kind === "timeout";
  }
}

const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH"]);

/**
 * LM Studio's wordings, matched loosely (case, punctuation and numbers vary between versions).
 * Order matters: the first match wins, so a load refusal that mentions an exit code stays a
 * refusal, and a crash text is only read as a crash when nothing says "load".
 */
const PATTERNS: ReadonlyArray<[FailureKind, RegExp]> = [
  [
    "connection-lost",
    /websocket connection closed|socket hang up|ECONNRESET|connection.*(lost|reset)/i,
  ],
  [
    "refused",
    /insufficient system resources|error loading model|failed to load model|out of memory|model loading was stopped|model loading aborted|failed to initiali[sz]e the context|failed to allocate|model_load_failed|exited before becoming healthy|no lm runtime found/i,
  ],
  [
    "context-overflow",
    /greater than the context length|context length.*exceed|exceeds? the context|context the overflows|when context overflows|n_keep.*>=\s*n_ctx|does not fit in context|context size has been exceeded|which is not enough/i,
  ],
  ["crashed", /has crashed|\(exit code: ?-?\d+\)|exitcode=/i],
  [
    "not-found",
    /not found|no model|no loaded model|cannot find|does not exist|no such model|already been unloaded/i,
  ],
  ["unreachable", /failed to connect to lm studio|make sure lm studio is running/i],
  ["aborted", /abort|cancel/i],
];

/** Failures of a load that say nothing about the size asked: everything else is a refusal. */
const NOT_ABOUT_THE_SIZE: ReadonlySet<FailureKind> = new Set([
  "unreachable",
  "connection-lost",
  "timeout",
  "not-found",
  "aborted",
]);

/**
 * Whether a load that failed with `kind` means "the model does not load at this size": any
 * failure but a lost or refused connection, a timeout, an unknown model or our own abort.
 */
export function isLoadRefusal(kind: FailureKind): boolean {
  return !NOT_ABOUT_THE_SIZE.has(kind);
}

/** Reads the kind of a failure from an error thrown by the SDK or the socket layer. */
export function classifyFailure(error: unknown): FailureKind {
  if (error instanceof LmStudioCallError) return error.kind;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && UNREACHABLE_CODES.has(code)) return "unreachable";
  if (code === "ECONNRESET") return "connection-lost";
  if ((error as { name?: unknown } | null)?.name === "AbortError") return "aborted";
  const text = messageOf(error);
  if (/ECONNREFUSED|ENOTFOUND|EHOSTUNREACH/.test(text)) return "unreachable";
  for (const [kind, pattern] of PATTERNS) if (pattern.test(text)) return kind;
  return "other";
}

/**
 * The text of an error, stripped of terminal colour codes and folded to a single line. The SDK
 * lays a server error out as a title, then `(!) SUGGESTION` and `(X) CAUSE` blocks under banner
 * labels; on one line that reads as "title: cause (suggestion)".
 */
export function messageOf(error: unknown): string {
  const raw = error instanceof Error ? error.message : String(error);
  // deno-lint-ignore no-control-regex
  let text = raw.replace(/\x1b\[[0-9;]*m/g, "");
  let cause = "";
  let suggestion = "";
  const causeAt = text.indexOf(CAUSE_LABEL);
  if (causeAt >= 0) {
    cause = text.slice(causeAt + CAUSE_LABEL.length);
    text = text.slice(0, causeAt);
  }
  const suggestionAt = text.indexOf(SUGGESTION_LABEL);
  if (suggestionAt >= 0) {
    suggestion = text.slice(suggestionAt + SUGGESTION_LABEL.length);
    text = text.slice(0, suggestionAt);
  }
  const fold = (part: string) => part.replace(/\s+/g, " ").trim();
  const line = [fold(text), fold(cause)].filter((part) => part !== "").join(": ");
  return fold(suggestion) === "" ? line : `${line} (${fold(suggestion)})`;
}

/** The SDK's banner labels in a server error's message (`deserializeOtherError`). */
const CAUSE_LABEL = "(X) CAUSE";
const SUGGESTION_LABEL = "(!) SUGGESTION";

/**
 * What the SDK's "Received invalid result for rpc" warning says is wrong with a reply of
 * `endpoint`, in one line: the Zod issues, each naming the entry by its `modelKey` where the
 * reply (printed in the warning) can be read; null when the warning is about something else.
 */
export function droppedReplyReason(warning: string, endpoint: string): string | null {
  // deno-lint-ignore no-control-regex
  const text = warning.replace(/\x1b\[[0-9;]*m/g, "");
  if (!text.includes(`endpointName = ${endpoint}`)) return null;
  let reply: unknown;
  const start = text.indexOf("result = ");
  const end = text.lastIndexOf(". Zod error:");
  if (start >= 0 && end > start) {
    try {
      reply = JSON.parse(text.slice(start + "result = ".length, end));
    } catch {
      reply = undefined; // The printed reply may be cut or not JSON: name entries by position.
    }
  }
  const issues = [...text.matchAll(/^\s*-\s*result\.(\S+?):\s*(.+)$/gm)].map(
    ([, path, problem]) => {
      const [index, ...field] = path!.split(".");
      const entry = Array.isArray(reply) ? reply[Number(index)] : undefined;
      const key = (entry as { modelKey?: unknown } | undefined)?.modelKey;
      const which = typeof key === "string" ? `model "${key}"` : `entry ${Number(index) + 1}`;
      return `${which}, ${field.join(".") || "the entry"}: ${problem!.trim()}`;
    },
  );
  const what = issues.length > 0 ? issues.join("; ") : "it does not match the SDK's schema";
  return `${what} (the SDK drops the whole ${endpoint} reply)`;
}

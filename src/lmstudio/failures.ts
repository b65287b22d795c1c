/**
 * Classifies what goes wrong when talking to LM Studio.
 *
 * The SDK reports every server-side failure as a plain `Error` whose message carries LM Studio's
 * title, cause and suggestion as text, so the kind is read from the text (and from `code` for
 * socket errors). Kept in one place so that new LM Studio wording needs one change.
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

const PATTERNS: ReadonlyArray<[FailureKind, RegExp]> = [
  [
    "connection-lost",
    /websocket connection closed|socket hang up|ECONNRESET|connection.*(lost|reset)/i,
  ],
  [
    "refused",
    /insufficient system resources|error loading model|failed to load model|out of memory|model loading was stopped|model loading aborted/i,
  ],
  [
    "context-overflow",
    /greater than the context length|context length.*exceed|exceeds? the context/i,
  ],
  ["not-found", /not found|no model|cannot find|does not exist|no such model/i],
  ["aborted", /abort|cancel/i],
];

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

/** The text of an error, stripped of terminal colour codes and folded to a single line. */
export function messageOf(error: unknown): string {
  const raw = error instanceof Error ? error.message : String(error);
  // deno-lint-ignore no-control-regex
  return raw.replace(/\x1b\[[0-9;]*m/g, "").replace(/\s+/g, " ").trim();
}

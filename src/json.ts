/**
 * Checks on parsed JSON, shared by every reader of a file LMStrix did not necessarily write.
 *
 * @module
 */

/** True for a plain JSON object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Why `text` is not valid JSON, saying where but never quoting it: the file may be someone's
 * secret that a link pointed us to, and its bytes must not end up in an error line or a log.
 */
export function jsonSyntaxProblem(error: unknown, text: string): string {
  const message = error instanceof Error ? error.message : "";
  if (/unexpected end/i.test(message) || text.trim() === "") {
    return "it is not valid JSON (it ends too soon)";
  }
  const position = /position (\d+)/.exec(message)?.[1];
  if (position === undefined) return "it is not valid JSON";
  const before = text.slice(0, Number(position));
  const line = before.split("\n").length;
  const column = before.length - before.lastIndexOf("\n");
  return `it is not valid JSON (at line ${line}, column ${column})`;
}

/**
 * A key-value object without a prototype, for collections keyed by model ids: a model may be
 * called `constructor`, `toString` or `__proto__`, and must neither read an inherited property
 * nor set the object's prototype.
 */
export function dictionary<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

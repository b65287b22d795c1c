/**
 * Checks on parsed JSON, shared by every reader of a file LMStrix did not necessarily write.
 *
 * @module
 */

/** True for a plain JSON object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

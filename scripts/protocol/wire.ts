/**
 * Wire helpers of the LM Studio protocol (shared by the emulator and the real engine's server):
 * the error shape the SDK expects, and reading the kv config stacks the SDK sends.
 *
 * @module
 */

/** The serialized error shape the SDK expects in `rpcError` / `channelError`. */
export interface WireError {
  title: string;
  rootTitle: string;
  cause?: string;
  suggestion?: string;
  displayData?: Record<string, unknown>;
}

/** An error to send to the client as LM Studio would. */
export class LmsError extends Error {
  readonly wire: WireError;
  constructor(title: string, extra: Omit<WireError, "title" | "rootTitle"> = {}) {
    super(title);
    this.wire = { title, rootTitle: title, ...extra };
  }
}

export type Json = Record<string, unknown>;

export function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The instance an `instanceReference` specifier points at, or LM Studio's error when it has been
 * unloaded; undefined for a query specifier, which each back end matches its own way.
 */
export function referencedInstance<T extends { instanceReference: string }>(
  instances: Iterable<T>,
  specifier: unknown,
): T | undefined {
  if (!isRecord(specifier) || specifier.type !== "instanceReference") return undefined;
  for (const instance of instances) {
    if (instance.instanceReference === specifier.instanceReference) return instance;
  }
  throw new LmsError("This model has already been unloaded.", {
    displayData: { code: "generic.specificModelUnloaded" },
  });
}

export const NAMESPACES = new Set([
  "llm",
  "embedding",
  "system",
  "diagnostics",
  "files",
  "repository",
  "plugins",
]);

export interface KvField {
  key: string;
  value: unknown;
}

/** The value of `key` in a kv config stack (later layers win), or undefined. */
export function stackValue(stack: unknown, key: string): unknown {
  let found: unknown = undefined;
  if (!isRecord(stack) || !Array.isArray(stack.layers)) return undefined;
  for (const layer of stack.layers) {
    if (!isRecord(layer) || !isRecord(layer.config) || !Array.isArray(layer.config.fields)) {
      continue;
    }
    for (const field of layer.config.fields) {
      if (isRecord(field) && field.key === key) found = field.value;
    }
  }
  return found;
}

/** All fields of a stack collapsed (later layers win), as a kv config. */
export function collapseStack(stack: unknown): { fields: KvField[] } {
  const fields = new Map<string, unknown>();
  if (isRecord(stack) && Array.isArray(stack.layers)) {
    for (const layer of stack.layers) {
      if (!isRecord(layer) || !isRecord(layer.config) || !Array.isArray(layer.config.fields)) {
        continue;
      }
      for (const field of layer.config.fields) {
        if (isRecord(field) && typeof field.key === "string") fields.set(field.key, field.value);
      }
    }
  }
  return { fields: [...fields].map(([key, value]) => ({ key, value })) };
}

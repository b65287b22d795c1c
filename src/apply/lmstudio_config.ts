/**
 * LM Studio's per-model default load config, as text: read its context length and set a new one
 * without touching anything else.
 *
 * LM Studio keeps one file per model under
 * `<lmstudio-dir>/.internal/user-concrete-model-default-config/<model path>.json` and uses it
 * whenever the model is loaded in the app or with `lms load`. Its shape, in every example found:
 *
 * ```json
 * {"preset":"","operation":{"fields":[]},
 *  "load":{"fields":[{"key":"llm.load.contextLength","value":65536}, ...]}}
 * ```
 *
 * Everything else in it is the user's: KV-cache quantization, flash attention, GPU offload, a
 * preset. So the new value is spliced into the text at the byte range of the old one (or a field
 * is inserted after the last one), and every other byte stays where it was: values, field order,
 * whitespace. A file that is not strict JSON, or whose shape is not the one above, is never edited.
 *
 * Pure: text in, text out.
 *
 * @module
 */

import { type Node, parse, type ParseError, parseTree, printParseErrorCode } from "jsonc-parser";

/** The key of the context length among the `load` fields. */
export const CONTEXT_LENGTH_KEY = "llm.load.contextLength";

/** What a config file's text says, or why it cannot be edited. */
export type ParsedConfig =
  | {
    ok: true;
    /** The context length the file sets, or null when it sets none. */
    contextLength: number | null;
  }
  | {
    ok: false;
    /** Why the file is left alone, e.g. "it is not valid JSON (...)". */
    problem: string;
  };

/** The file LM Studio would have for a model with only a context length set. */
export function skeletonConfig(contextLength: number): string {
  return JSON.stringify(
    {
      preset: "",
      operation: { fields: [] },
      load: { fields: [{ key: CONTEXT_LENGTH_KEY, value: contextLength }] },
    },
    null,
    2,
  ) + "\n";
}

/** Reads the context length a config file's text sets, or says why the file is not editable. */
export function parseConfig(text: string): ParsedConfig {
  const located = locate(text);
  if (!located.ok) return located;
  const value = located.field === null ? null : located.field.value;
  return { ok: true, contextLength: value };
}

/**
 * Returns `text` with the context length set to `contextLength`; every other byte is kept. When
 * the file sets no context length, a field is added after the last `load` field. Throws when the
 * text is not editable (check {@linkcode parseConfig} first).
 */
export function setContextLength(text: string, contextLength: number): string {
  if (!Number.isSafeInteger(contextLength) || contextLength <= 0) {
    throw new RangeError(`A context length must be a positive whole number, not ${contextLength}`);
  }
  const located = locate(text);
  if (!located.ok) throw new Error(`Cannot edit the config: ${located.problem}`);
  if (located.field !== null) {
    const { offset, length } = located.field.node;
    return text.slice(0, offset) + String(contextLength) + text.slice(offset + length);
  }
  const fields = located.fields;
  const item = { key: CONTEXT_LENGTH_KEY, value: contextLength };
  const children = fields.children ?? [];
  const last = children.at(-1);
  if (last === undefined) {
    // `[]` (with whatever is between the brackets): the one field, compact.
    const open = fields.offset + 1;
    const close = fields.offset + fields.length - 1;
    return text.slice(0, open) + JSON.stringify(item) + text.slice(close);
  }
  // Lay the new field out as the first one is: on its own line with the same indentation, and
  // spread over lines with the file's indentation step if the first one is.
  const first = children[0]!;
  const lead = text.slice(fields.offset + 1, first.offset);
  const firstText = text.slice(first.offset, first.offset + first.length);
  let itemText = JSON.stringify(item);
  if (firstText.includes("\n")) {
    const indent = /\n([ \t]*)$/.exec(lead)?.[1] ?? "";
    const step = /\n([ \t]+)\S/.exec(firstText)?.[1]?.slice(indent.length) || "  ";
    itemText = JSON.stringify(item, null, step).replaceAll("\n", `\n${indent}`);
  }
  const end = last.offset + last.length;
  return text.slice(0, end) + "," + (lead.trim() === "" ? lead : "") + itemText + text.slice(end);
}

type Located =
  | { ok: true; fields: Node; field: { node: Node; value: number } | null }
  | { ok: false; problem: string };

/**
 * The deepest nesting a config may have. LM Studio's are 5 deep; the tree walks below recurse,
 * and a file nested thousands deep would exhaust the stack and end the whole run.
 */
export const MAX_CONFIG_DEPTH = 64;

/** Finds the `load.fields` array and the context length field in it, checking the shape. */
function locate(text: string): Located {
  if (nestingDepth(text) > MAX_CONFIG_DEPTH) {
    return { ok: false, problem: `it is nested too deeply (over ${MAX_CONFIG_DEPTH} levels)` };
  }
  try {
    // Strict JSON first: the tree parser below also takes comments and trailing commas.
    JSON.parse(text);
  } catch {
    // Never the parser's message: it quotes the file, which may be a secret a link points to.
    return { ok: false, problem: `it is not valid JSON (${syntaxErrorPlace(text)})` };
  }
  const root = parseTree(text);
  if (root === undefined || root.type !== "object") {
    return { ok: false, problem: "it is not a JSON object" };
  }
  const duplicate = duplicateKey(root);
  if (duplicate !== null) {
    return { ok: false, problem: `the key "${duplicate}" appears twice in one object` };
  }
  const load = property(root, "load");
  if (load === undefined || load.type !== "object") {
    return { ok: false, problem: `it has no "load" object` };
  }
  const fields = property(load, "fields");
  if (fields === undefined || fields.type !== "array") {
    return { ok: false, problem: `"load" has no "fields" array` };
  }
  let field: { node: Node; value: number } | null = null;
  for (const [index, entry] of (fields.children ?? []).entries()) {
    const key = entry.type === "object" ? property(entry, "key") : undefined;
    const value = entry.type === "object" ? property(entry, "value") : undefined;
    if (key?.type !== "string" || value === undefined) {
      return {
        ok: false,
        problem: `load field ${index + 1} is not an object with a "key" and a "value"`,
      };
    }
    if (key.value !== CONTEXT_LENGTH_KEY) continue;
    if (field !== null) return { ok: false, problem: `it sets "${CONTEXT_LENGTH_KEY}" twice` };
    if (value.type !== "number" || !Number.isSafeInteger(value.value) || value.value < 0) {
      return {
        ok: false,
        problem: `its "${CONTEXT_LENGTH_KEY}" is ${
          text.slice(value.offset, value.offset + value.length)
        }, not a whole number`,
      };
    }
    field = { node: value, value: value.value as number };
  }
  return { ok: true, fields, field };
}

/** The deepest nesting of brackets and braces outside strings, scanned without recursion. */
function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // A backslash escapes the next character.
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return deepest;
}

/** Where strict JSON parsing fails, as "line L, column C", without quoting the text. */
function syntaxErrorPlace(text: string): string {
  const errors: ParseError[] = [];
  parse(text, errors, { disallowComments: true, allowTrailingComma: false });
  const first = errors[0];
  if (first === undefined) return "a value JSON does not allow";
  const before = text.slice(0, first.offset);
  const line = before.split("\n").length;
  const column = first.offset - (before.lastIndexOf("\n") + 1) + 1;
  return `${printParseErrorCode(first.error)} at line ${line}, column ${column}`;
}

/** The value node of `object`'s property `name`. */
function property(object: Node, name: string): Node | undefined {
  for (const prop of object.children ?? []) {
    const [keyNode, valueNode] = prop.children ?? [];
    if (keyNode?.value === name) return valueNode;
  }
  return undefined;
}

/** The first key that appears twice in one object anywhere in the tree, or null. */
function duplicateKey(node: Node): string | null {
  if (node.type === "object") {
    const seen = new Set<string>();
    for (const prop of node.children ?? []) {
      const name = String(prop.children?.[0]?.value);
      if (seen.has(name)) return name;
      seen.add(name);
    }
  }
  for (const child of node.children ?? []) {
    const found = duplicateKey(child);
    if (found !== null) return found;
  }
  return null;
}

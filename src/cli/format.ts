/** Small formatting helpers shared by the command views. */

import { visibleWidth } from "../output.ts";

export { visibleWidth, wrapWords } from "../output.ts";

/**
 * Tokens as people read them: exact, with thousands separators ("131,072", "45,000"). One format
 * for every number of a line: "128k" would be ambiguous (128,000 or 131,072?) and rounds a
 * measured limit. Where a user copies a number into LM Studio, `show` prints plain digits.
 */
export function formatTokens(tokens: number | null | undefined): string {
  if (tokens === null || tokens === undefined) return "-";
  return tokens.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/**
 * Shortens `text` to at most `max` columns by taking out its middle ("qwen2.5-…-instruct"): the
 * start and the end of a model name are what tell models apart.
 */
export function shortenMiddle(text: string, max: number): string {
  const chars = [...text];
  if (chars.length <= max) return text;
  if (max <= 1) return "…".slice(0, Math.max(0, max));
  const keep = max - 1;
  const head = Math.ceil(keep / 2);
  return chars.slice(0, head).join("") + "…" + chars.slice(chars.length - (keep - head)).join("");
}

/** The narrowest a model name is shortened to before a line gives up something else. */
export const MIN_NAME_WIDTH = 12;

/** The narrowest a name gets when nothing else can give way. */
const LAST_RESORT_NAME_WIDTH = 5;

/**
 * One line of at most `width - 1` columns (a live line that fills the last column wraps on some
 * terminals) made of `before`, a model `name`, and `after` (one form, or forms from the longest
 * to the shortest). In order, until it fits: the `optional` tail is left out, a shorter form of
 * `after` is used, the name is shortened from the middle (to {@linkcode MIN_NAME_WIDTH}); at last
 * it shrinks further. What `after` says (the verdict, the numbers) is never cut.
 */
export function fitLine(
  parts: { before?: string; name: string; after: string | string[]; optional?: string },
  width: number | undefined,
): string {
  const before = parts.before ?? "";
  const optional = parts.optional ?? "";
  const forms = typeof parts.after === "string" ? [parts.after] : parts.after;
  const line = (name: string, after: string, tail: string) => before + name + after + tail;
  if (width === undefined) return line(parts.name, forms[0]!, optional);
  const nameWidth = visibleWidth(parts.name);
  const roomFor = (after: string, tail: string) =>
    width - 1 - visibleWidth(before) - visibleWidth(after) - visibleWidth(tail);
  // The whole name with the tail, the whole name in any form, then a shortened name: a person
  // reads the name before the timing or the longer wording.
  if (optional && roomFor(forms[0]!, optional) >= nameWidth) {
    return line(parts.name, forms[0]!, optional);
  }
  for (const after of forms) {
    if (roomFor(after, "") >= nameWidth) return line(parts.name, after, "");
  }
  for (const after of forms) {
    const room = roomFor(after, "");
    if (room >= Math.min(MIN_NAME_WIDTH, nameWidth)) {
      return line(shortenMiddle(parts.name, room), after, "");
    }
  }
  const shortest = forms.at(-1)!;
  const room = Math.max(LAST_RESORT_NAME_WIDTH, roomFor(shortest, ""));
  return line(shortenMiddle(parts.name, room), shortest, "");
}

/** Bytes in binary units with one decimal: "4.4 GiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A percentage with one decimal, or "-". */
export function formatPercent(percent: number | null): string {
  return percent === null ? "-" : `${percent.toFixed(1)}%`;
}

/** Seconds or minutes, for elapsed times. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/**
 * A bar of `width` cells showing working and loadable context against the declared one:
 * working cells, then the loadable part beyond working, then the rest of the declared context.
 */
export function contextBar(
  declared: number,
  loadable: number | null,
  working: number | null,
  width: number,
  unicode: boolean,
): string {
  if (declared <= 0 || (loadable === null && working === null)) return " ".repeat(width);
  const cells = (n: number | null) =>
    n === null ? 0 : Math.max(0, Math.min(width, Math.round((n / declared) * width)));
  const w = cells(working);
  const l = Math.max(w, cells(loadable));
  const [full, part, rest] = unicode ? ["█", "▒", "·"] : ["#", "+", "."];
  return full.repeat(w) + part.repeat(l - w) + rest.repeat(width - l);
}

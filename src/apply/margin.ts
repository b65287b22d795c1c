/**
 * The margin `apply` leaves below the working context: a number of tokens (`512`, `1k`) or a
 * share of the working context (`10%`). The working context is measured with a prompt that fills
 * the context up to a 64-token reserve; a margin keeps room for longer answers or a model that
 * is a little less sharp on other texts than on the needle probe.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** A parsed margin. */
export type Margin = { tokens: number } | { percent: number };

/** No margin: the working context as measured. */
export const NO_MARGIN: Margin = { tokens: 0 };

/**
 * Parses `512`, `1k` (1024 tokens), `0` or `10%` / `2.5%` (below 100). Throws
 * {@linkcode UsageError} for anything else.
 */
export function parseMargin(text: string): Margin {
  const trimmed = text.trim();
  const percent = /^(\d+(?:\.\d+)?)\s*%$/.exec(trimmed);
  if (percent) {
    const value = Number(percent[1]);
    if (value < 100) return { percent: value };
  } else {
    const tokens = /^(\d+(?:\.\d+)?)\s*(k?)$/i.exec(trimmed);
    const value = tokens ? Number(tokens[1]) * (tokens[2] ? 1024 : 1) : NaN;
    if (Number.isSafeInteger(value)) return { tokens: value };
  }
  throw new UsageError(`Cannot read the margin "${text}"`, {
    hint: "give a number of tokens (512, 1k) or a share of the working context below 100% (10%)",
  });
}

/** The margin as the user would write it: "512" or "10%". */
export function formatMargin(margin: Margin): string {
  return "percent" in margin ? `${margin.percent}%` : String(margin.tokens);
}

/** The context length to write for `working` with `margin`; the margin is rounded up. */
export function contextWithMargin(working: number, margin: Margin): number {
  const less = "percent" in margin
    ? Math.ceil(working * margin.percent / 100 - 1e-9)
    : margin.tokens;
  return working - less;
}

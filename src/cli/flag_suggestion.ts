/**
 * "Did you mean" for an unknown flag, where commander's own suggestion (an edit distance of at
 * most 3) stays silent: a flag typed short (`--max-ctx` for `--max-context`), and the words `lms`
 * users bring with them (`-c` and `--context-length` are `lms load`'s context length).
 *
 * @module
 */

/**
 * Flags of `lms` (LM Studio's own command line) and what LMStrix calls the nearest thing. `-c` is
 * not accepted as a flag of its own: in `lms load` it sets the context a model loads at, and
 * LMStrix has two different things it could mean (a cap on the search, or one size to check).
 */
const LMS_WORDS: Record<string, readonly string[]> = {
  "-c": ["--max-context", "--ctx"],
  "--context-length": ["--max-context", "--ctx"],
  "--host": ["--server"],
  "--port": ["--server"],
};

/**
 * The flags of `known` the user may have meant by `typed` (with any `=value` dropped), best first;
 * empty when nothing is close.
 */
export function suggestFlags(typed: string, known: readonly string[]): string[] {
  const flag = typed.split("=", 1)[0]!;
  const fromLms = (LMS_WORDS[flag] ?? []).filter((f) => known.includes(f));
  if (fromLms.length > 0) return fromLms;
  if (!flag.startsWith("--") || flag.length < 4) return [];
  const words = flag.slice(2).split("-");
  // Each word typed is the start of the flag's word at the same place, or its letters in order
  // ("ctx" in "context"), and the first word starts the same.
  const close = known.filter((candidate) => {
    if (!candidate.startsWith("--")) return false;
    const theirs = candidate.slice(2).split("-");
    return theirs.length === words.length && theirs[0]![0] === words[0]![0] &&
      words.every((w, i) => inOrder(w, theirs[i]!));
  });
  return close.length <= 3 ? close : [];
}

/** Whether every letter of `short` appears in `long` in the same order, starting alike. */
function inOrder(short: string, long: string): boolean {
  if (short === "" || short[0] !== long[0]) return false;
  let at = 0;
  for (const c of short) {
    at = long.indexOf(c, at) + 1;
    if (at === 0) return false;
  }
  return true;
}

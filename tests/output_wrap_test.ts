/** The one word-wrap of text a person reads, and the messages on stderr that use it. */

import assert from "node:assert/strict";
import { MemorySink, Output, visibleWidth, wrapWords } from "../src/output.ts";

/** Every line of `text` fits `width` columns less one (the terminal's last column). */
function assertFits(text: string, width: number): void {
  for (const line of text.split("\n")) {
    assert.ok(visibleWidth(line) <= width - 1, `${visibleWidth(line)} columns: ${line}`);
  }
}

/** The words of `text`, whatever the line breaks and indents. */
const words = (text: string) => text.split(/\s+/).filter(Boolean);

Deno.test("wrapWords breaks at spaces, never inside a word, and keeps a line that fits", () => {
  const text = "a prediction failed (the connection to LM Studio closed); trying again, " +
    "attempt 2 of 4, after a pause of two seconds so that LM Studio can recover";
  const lines = wrapWords(text, "  ", 40, "warning: ");
  assert.ok(lines.length > 2);
  assertFits(lines.join("\n"), 40);
  assert.ok(lines[0]!.startsWith("warning: "));
  assert.ok(lines.slice(1).every((l) => l.startsWith("  ")));
  assert.deepEqual(words(lines.join(" ")).slice(1), words(text));
  assert.deepEqual(wrapWords("short  spaced   text", "", 40), ["short  spaced   text"]);
  // A word longer than the line keeps a line of its own, whole.
  const path = "/home/me/.lmstudio/models/" + "x".repeat(60);
  assert.ok(wrapWords(`see ${path} now`, "", 40).includes(path));
  // A quoted command is not split across lines.
  const hint = 'e.g. "lmstrix apply --undo --all --dry-run", or name models from "lmstrix list"';
  const wrapped = wrapWords(hint, "  ", 80, "hint: ");
  assert.equal(wrapped.length, 2);
  assert.ok(wrapped[1]!.includes('"lmstrix list"'));
});

Deno.test("errors, hints, warnings and notes wrap at words at 80 columns", () => {
  const stderr = new MemorySink();
  const output = new Output({ stdout: new MemorySink(), stderr, columns: 80, color: false });
  const candidates = ["qwen2.5-7b-instruct", "qwen2.5-7b-instruct-1m", "qwen3-8b"];
  const message = `Model "qwen" is ambiguous: it matches ${
    candidates.map((c) => `"${c}"`).join(", ")
  }, "qwen2.5-coder-7b-instruct-mlx" and "qwen3-30b-a3b-instruct-2507"`;
  const hint = 'pass more of the id, e.g. "lmstrix show qwen2.5-7b-instruct-1m", or run ' +
    '"lmstrix list" to see every model id';
  output.error(message, hint);
  output.warn(message);
  output.info(`Kept the numbers of 6 models tested already; ${message}`);
  const text = stderr.text.trimEnd();
  assertFits(text, 80);
  const lines = text.split("\n");
  assert.ok(lines.length >= 8, text);
  assert.equal(lines.filter((l) => l.startsWith("error: ")).length, 1);
  assert.equal(lines.filter((l) => l.startsWith("hint: ")).length, 1);
  // No word was cut: the words on the screen are the words of the messages.
  assert.deepEqual(
    words(text).filter((w) => !["error:", "hint:", "warning:"].includes(w)),
    words(`${message} ${hint} ${message} Kept the numbers of 6 models tested already; ${message}`),
  );
});

Deno.test("without a known width, a message stays one line", () => {
  const stderr = new MemorySink();
  const output = new Output({ stdout: new MemorySink(), stderr, columns: undefined });
  output.error("x ".repeat(100).trim(), "y ".repeat(60).trim());
  assert.equal(stderr.text.trimEnd().split("\n").length, 2);
});

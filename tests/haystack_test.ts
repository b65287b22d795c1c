/** The needle prompt builder: exact token counts, the contract's format, shared prefixes. */

import assert from "node:assert/strict";
import { countTokens } from "../scripts/emulator/tokenizer.ts";
import { gradeNeedle, gradeSanity, Haystack, questionFor } from "../src/probe/haystack.ts";

const count = (text: string) => Promise.resolve(countTokens(text));
const NEEDLE = /One of the special magic numbers for ([a-z]+(?:-[a-z]+)+) is: (\d{7})\./g;

Deno.test("needle prompts", async (t) => {
  await t.step("hit the asked token count exactly for many sizes", async () => {
    const haystack = new Haystack(11);
    for (const target of [600, 2_000, 4_033, 16_384, 65_000, 131_008]) {
      const built = await haystack.build(target, 0.5, count);
      assert.equal(built.promptTokens, target, `target ${target}`);
      assert.equal(countTokens(built.prompt), target);
    }
  });

  await t.step("stay exact with a tokenizer that adds a start token to every count", async () => {
    // Chunk sums then overcount by one token per chunk: the builder must notice and count whole.
    const withStart = (text: string) => Promise.resolve(countTokens(text) + 1);
    const haystack = new Haystack(21);
    for (const target of [3_000, 40_000]) {
      const built = await haystack.build(target, 0.5, withStart);
      assert.equal(built.promptTokens, target);
      assert.equal(countTokens(built.prompt) + 1, target);
    }
  });

  await t.step("follow the contract's needle, question and answer-prefix format", async () => {
    const built = await new Haystack(3).build(8_000, 0.3, count);
    const needles = [...built.prompt.matchAll(NEEDLE)];
    assert.ok(needles.length >= 2, "distractor needles are present");
    assert.ok(needles.some((m) => m[1] === built.key && m[2] === built.value));
    assert.ok(built.prompt.endsWith(questionFor(built.key)));
    assert.ok(
      built.prompt.endsWith(
        `What is the special magic number for ${built.key} mentioned in the provided text? ` +
          `The special magic number for ${built.key} mentioned in the provided text is`,
      ),
    );
    // Values are unique, so the answer names exactly one needle.
    assert.equal(new Set(needles.map((m) => m[2])).size, needles.length);
  });

  await t.step("put the asked needle near the asked depth", async () => {
    const haystack = new Haystack(5);
    const shallow = await haystack.build(30_000, 0.1, count);
    const deep = await haystack.build(30_000, 0.9, count);
    assert.ok(shallow.depth < 0.3, `shallow depth ${shallow.depth}`);
    assert.ok(deep.depth > 0.7, `deep depth ${deep.depth}`);
    assert.notEqual(shallow.key, deep.key);
  });

  await t.step(
    "of one seed share their beginning, so the server's prompt cache is reused",
    async () => {
      const haystack = new Haystack(9);
      const short = await haystack.build(5_000, 0.5, count);
      const long = await haystack.build(20_000, 0.5, count);
      const body = short.prompt.slice(0, short.prompt.lastIndexOf("\n\nWhat is"));
      assert.ok(long.prompt.startsWith(body));
      const other = await new Haystack(10).build(5_000, 0.5, count);
      assert.notEqual(other.value, short.value, "a fresh seed gives a fresh needle");
    },
  );

  await t.step("are graded by the value alone, and 2+2= by a 4", () => {
    assert.ok(gradeNeedle(" 4821937.", "4821937"));
    assert.ok(!gradeNeedle(" 4821938.", "4821937"));
    assert.ok(!gradeNeedle("", "4821937"));
    assert.ok(gradeSanity(" 4"));
    assert.ok(!gradeSanity(" five"));
  });
});

/** The `list` view: sorting, the context bar, and plain text when not on a terminal. */

import assert from "node:assert/strict";
import { contextBar, formatTokens } from "../src/cli/format.ts";
import { parseSortKey, renderList, sortRecords } from "../src/cli/list.ts";
import { UsageError } from "../src/errors.ts";
import { displayText, MemorySink, noColorRequested, Output } from "../src/output.ts";
import type { ModelRecord } from "../src/registry/model_record.ts";

function record(
  id: string,
  declared: number,
  loadable: number | null,
  working: number | null,
  size: number,
): ModelRecord {
  return {
    id,
    path: `x/${id}.gguf`,
    sizeBytes: size,
    architecture: "llama",
    declaredContext: declared,
    loadableContext: loadable,
    workingContext: working,
    status: working === null ? "untested" : "tested",
    testedAt: null,
    error: null,
    type: "llm",
  };
}

const records = [
  record("b-model", 131072, 65536, 20000, 4e9),
  record("a-model", 32768, 32768, 32768, 8e9),
  record("c-model", 8192, null, null, 1e9),
];

Deno.test("list", async (t) => {
  await t.step("sorts by each key, ties by name, and reverses", () => {
    assert.deepEqual(sortRecords(records, "name").map((r) => r.id), [
      "a-model",
      "b-model",
      "c-model",
    ]);
    assert.deepEqual(sortRecords(records, "size").map((r) => r.id), [
      "c-model",
      "b-model",
      "a-model",
    ]);
    assert.deepEqual(sortRecords(records, "working", true).map((r) => r.id), [
      "a-model",
      "b-model",
      "c-model",
    ]);
    assert.deepEqual(sortRecords(records, "reduction", true).map((r) => r.id), [
      "b-model",
      "a-model",
      "c-model",
    ]);
    assert.throws(() => parseSortKey("colour"), UsageError);
  });

  await t.step("draws working, then loadable, then the rest of declared", () => {
    assert.equal(contextBar(131072, 65536, 32768, 8, false), "##++....");
    assert.equal(contextBar(100, 100, 100, 4, true), "████");
    assert.equal(contextBar(100, null, null, 4, false), "    ");
  });

  await t.step(
    "leaves out the reduction, the size, then the bar, to fit a narrow terminal",
    async () => {
      const output = new Output({
        stdout: new MemorySink(true),
        stderr: new MemorySink(false),
        color: false,
      });
      const wide = await renderList(records, output, true, 200);
      assert.match(wide, /context/);
      const narrow = await renderList(records, output, true, 70);
      assert.doesNotMatch(narrow, /reduction|GiB/);
      assert.match(narrow, /context/);
      assert.ok(narrow.split("\n").every((line) => line.length <= 70));
      const narrower = await renderList(records, output, true, 56);
      assert.doesNotMatch(narrower, /context|reduction|GiB/);
      assert.ok(narrower.split("\n").every((line) => line.length <= 56));
    },
  );

  await t.step("marks a limit that is only the --max-context cap with ≥", async () => {
    const capped = { ...record("d-model", 1048576, 65536, 65536, 2e9), cappedAt: 65536 };
    const output = new Output({ stdout: new MemorySink(false), stderr: new MemorySink(false) });
    const text = await renderList([capped], output, false);
    // A lower bound has no reduction: the true one may be smaller.
    assert.match(text.split("\n")[1]!, /^d-model\s+1,048,576\s+≥65,536\s+≥65,536\s+-\s+tested/);
  });

  await t.step("writes every number exactly, in one format", () => {
    assert.equal(formatTokens(131072), "131,072");
    assert.equal(formatTokens(58421), "58,421");
    assert.equal(formatTokens(2048), "2,048");
    assert.equal(formatTokens(null), "-");
  });

  await t.step("is plain aligned text without colour or box drawing off a terminal", async () => {
    const stdout = new MemorySink(false);
    const output = new Output({ stdout, stderr: new MemorySink(false) });
    const text = await renderList(sortRecords(records, "name"), output, false);
    assert.ok(!text.includes("\x1b["), "no colour codes");
    assert.doesNotMatch(text, /[│─┌└]/);
    const lines = text.split("\n");
    assert.equal(lines.length, 4);
    assert.match(lines[0]!, /^model\s+declared\s+loadable\s+working\s+reduction\s+status\s+size/);
    assert.match(
      lines[2]!,
      /^b-model\s+131,072\s+65,536\s+20,000\s+84\.7%\s+tested\s+3\.7 GiB\s+##\+\+\+\.\.\.\.\.$/,
    );
  });

  for (const width of [60, 80, 120]) {
    await t.step(
      `fits ${width} columns: long names shortened from the middle, no number cut`,
      async () => {
        const long = record(
          "lmstudio-community/Meta-Llama-3.1-70B-Instruct-abliterated-GGUF-Q4_K_M-imatrix",
          1048576,
          1048576,
          1000448,
          42e9,
        );
        const tail = record("qwen2.5-7b-instruct", 32768, 32768, 30000, 4e9);
        for (const fancy of [true, false]) {
          const output = new Output({
            stdout: new MemorySink(fancy),
            stderr: new MemorySink(false),
            color: false,
          });
          const text = await renderList([long, tail], output, fancy, width);
          const lines = text.split("\n");
          for (const line of lines) assert.ok([...line].length <= width, `${width}: ${line}`);
          const row = lines.find((line) => line.includes("…"))!;
          assert.ok(row !== undefined, "the long name is shortened");
          assert.match(row, /lms\S*…\S*rix /, "it keeps the start and the end of the name");
          assert.match(row, /1,048,576/);
          assert.match(row, /1,000,448/);
          assert.match(row, /tested/);
          // At 80 columns the bar stays (names shorten first; boxed, with million-token
          // numbers, even a name of 19 characters loses one).
          if (width >= 80) assert.match(lines.join("\n"), /context/, "the bar stays");
          if (width >= 120 || (width >= 80 && !fancy)) {
            assert.ok(
              lines.some((line) => line.includes("qwen2.5-7b-instruct")),
              "names that fit stay",
            );
          }
        }
      },
    );
  }

  await t.step("renders 8,000 models in linear time", async () => {
    const many = Array.from(
      { length: 8000 },
      (_, i) => record(`org/model-${i}-instruct`, 131072, 65536 + i, 30000 + i, 1e9 + i),
    );
    const output = new Output({ stdout: new MemorySink(false), stderr: new MemorySink(false) });
    const started = performance.now();
    const text = await renderList(many.slice(0, 1000), output, false, 100);
    const small = performance.now() - started;
    const again = performance.now();
    const big = await renderList(many, output, false, 100);
    const large = performance.now() - again;
    assert.equal(text.split("\n").length, 1001);
    assert.equal(big.split("\n").length, 8001);
    // Eight times the rows in well under the 64 times a quadratic renderer takes.
    assert.ok(
      large < small * 20 + 500,
      `1,000 rows ${small.toFixed(0)} ms, 8,000 ${large.toFixed(0)} ms`,
    );
  });

  await t.step("stops between batches of rows when its signal is aborted", async () => {
    const many = Array.from(
      { length: 2000 },
      (_, i) => record(`model-${i}`, 8192, 8192, 4096, 1e9),
    );
    const output = new Output({ stdout: new MemorySink(false), stderr: new MemorySink(false) });
    const controller = new AbortController();
    controller.abort("SIGINT");
    const text = await renderList(many, output, false, 100, { signal: controller.signal });
    assert.ok(text.split("\n").length < 2001, "it stopped before the end");
  });

  await t.step("shows control characters in model keys escaped, one row a model", async () => {
    const evil = record("evil\x1b]0;owned\x07\x1b[2Jkey\nsplit\u0000", 8192, 8192, 4096, 1e9);
    const output = new Output({ stdout: new MemorySink(true), stderr: new MemorySink(false) });
    for (const fancy of [true, false]) {
      const text = await renderList([evil], output, fancy, 200);
      assert.ok(!text.includes("\x1b]"), "no OSC sequence");
      assert.ok(!text.includes("\x1b[2J"), "no clear-screen sequence");
      assert.ok(!text.includes("\u0000"), "no NUL");
      assert.match(text, /evil\\x1b\]0;owned\\x07\\x1b\[2Jkey\\nsplit\\x00/);
    }
  });
});

Deno.test("NO_COLOR turns colour off only when it has a value", () => {
  assert.equal(noColorRequested(undefined), false);
  assert.equal(noColorRequested(""), false);
  assert.equal(noColorRequested("1"), true);
  assert.equal(noColorRequested("0"), true, "any value, even 0, as no-color.org says");
});

Deno.test("errors, warnings and progress show text from a server escaped, one line each", () => {
  const stderr = new MemorySink(true);
  const output = new Output({ stdout: new MemorySink(false), stderr, color: true, columns: 200 });
  const hostile = "Failed\u0000 to load\n\x1b]0;owned\x07\x1b[2J\u202edone";
  output.error(hostile, "retry\nlater");
  output.warn(hostile);
  output.progress(`  model: ${hostile}`);
  // Only our own colour codes (SGR) and the live line's erase-and-return remain.
  // deno-lint-ignore no-control-regex
  const rest = stderr.text.replace(/\x1b\[[0-9;]*m/g, "").replace(/\r\x1b\[2K/g, "");
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(rest, /[\u0000-\u0008\u000b-\u001f\u007f\u202e]/);
  assert.match(rest, /^error: Failed\\x00 to load\\n\\x1b\]0;owned\\x07\\x1b\[2J\\u202edone$/m);
  assert.match(rest, /^hint: retry\\nlater$/m);
  assert.equal(rest.trimEnd().split("\n").length, 4, rest);
});

Deno.test("zero-width and bidirectional characters in keys are shown escaped, so look-alikes differ", () => {
  const invisible = [
    ["qwen\u200b2.5", "qwen\\u200b2.5"], // zero-width space
    ["qwen\u200d2.5", "qwen\\u200d2.5"], // zero-width joiner
    ["qwen\u200e2.5", "qwen\\u200e2.5"], // left-to-right mark
    ["qwen\u20602.5", "qwen\\u20602.5"], // word joiner
    ["qwen\ufeff2.5", "qwen\\ufeff2.5"], // zero-width no-break space
    ["qwen\u00ad2.5", "qwen\\xad2.5"], // soft hyphen
    ["qwen\u061c2.5", "qwen\\u061c2.5"], // Arabic letter mark
    ["qwen\u{e0041}2.5", "qwen\\u{e0041}2.5"], // a tag character
  ];
  for (const [key, shown] of invisible) {
    assert.equal(displayText(key!), shown, JSON.stringify(key));
    const stdout = new MemorySink(false);
    const output = new Output({ stdout, stderr: new MemorySink(false), color: false, columns: 80 });
    output.data(`${key} tested`);
    assert.equal(stdout.text, `${shown} tested\n`);
  }
  assert.equal(displayText("qwen2.5 café 😀"), "qwen2.5 café 😀", "visible text is kept");
});

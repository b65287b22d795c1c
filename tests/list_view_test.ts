/** The `list` view: sorting, the context bar, and plain text when not on a terminal. */

import assert from "node:assert/strict";
import { contextBar, formatTokens } from "../src/cli/format.ts";
import { parseSortKey, renderList, sortRecords } from "../src/cli/list.ts";
import { UsageError } from "../src/errors.ts";
import { MemorySink, Output } from "../src/output.ts";
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

  await t.step("leaves out the bar, then the size, to fit a narrow terminal", async () => {
    const output = new Output({
      stdout: new MemorySink(true),
      stderr: new MemorySink(false),
      color: false,
    });
    const wide = await renderList(records, output, true, 200);
    assert.match(wide, /context/);
    const narrow = await renderList(records, output, true, 70);
    assert.doesNotMatch(narrow, /context|GiB/);
    assert.ok(narrow.split("\n").every((line) => line.length <= 70));
  });

  await t.step("marks a limit that is only the --max-context cap with ≥", async () => {
    const capped = { ...record("d-model", 1048576, 65536, 65536, 2e9), cappedAt: 65536 };
    const output = new Output({ stdout: new MemorySink(false), stderr: new MemorySink(false) });
    const text = await renderList([capped], output, false);
    assert.match(text.split("\n")[1]!, /^d-model\s+1024k\s+≥64k\s+≥64k\s/);
  });

  await t.step("writes exact measured numbers and k only for multiples of 1024", () => {
    assert.equal(formatTokens(131072), "128k");
    assert.equal(formatTokens(58421), "58,421");
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
      /^b-model\s+128k\s+64k\s+20,000\s+84\.7%\s+tested\s+3\.7 GiB\s+##\+\+\+\.\.\.\.\.$/,
    );
  });
});

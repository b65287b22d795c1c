/**
 * The `test` command's view: progress lines that fit the terminal without losing their verdict,
 * the results summary (capped limits as lower bounds), and `--verbose` attempt detail.
 *
 * @module
 */

import assert from "node:assert/strict";
import { progressReporter, renderResults, renderSummary } from "../src/cli/test.ts";
import { formatElapsed, formatLeft, RunClock } from "../src/cli/test_progress.ts";
import type { TestEvent, TestResult } from "../src/lmstrix.ts";
import { MemorySink, Output } from "../src/output.ts";
import type { AttemptLogEntry } from "../src/registry/attempt_log.ts";

const LONG_ID = "lmstudio-community/Meta-Llama-3.1-70B-Instruct-abliterated-GGUF-Q4_K_M-imatrix";

function entry(extra: Partial<AttemptLogEntry>): AttemptLogEntry {
  return {
    time: "2026-01-31T14:05:09.000Z",
    model: LONG_ID,
    phase: "working",
    action: "needle",
    askedContext: 131072,
    actualContext: null,
    promptTokens: 131008,
    outcome: "pass",
    output: "The special magic number is 1234567.",
    durationMs: 83_400,
    retries: 0,
    error: null,
    ...extra,
  };
}

const REFUSAL = "Model loading was stopped due to insufficient system resources.";

/** A check's log entry: a load stopped as it started, or refused before. */
function checkEntry(
  askedContext: number,
  outcome: "started" | "refused",
  output: string | null,
): AttemptLogEntry {
  return entry({
    phase: "loadable",
    action: "check",
    askedContext,
    promptTokens: null,
    outcome,
    output,
    durationMs: 750,
  });
}

function result(extra: Partial<TestResult>): TestResult {
  return {
    id: LONG_ID,
    declaredContext: 131072,
    loadableContext: 131072,
    workingContext: 98304,
    reductionPercent: 25,
    status: "tested",
    loads: 4,
    promptTokens: 412_000,
    error: null,
    kept: false,
    ...extra,
  };
}

/** The lines a terminal shows: each write after a carriage return replaces the line. */
function screenLines(text: string): string[] {
  // deno-lint-ignore no-control-regex
  return text.split(/\r\x1b\[2K|\n/).filter((line) => line !== "");
}

/** Drives the reporter with one model's events on a terminal `width` columns wide. */
function runEvents(width: number, verbose = false): string {
  const stderr = new MemorySink(true);
  const output = new Output({
    stdout: new MemorySink(false),
    stderr,
    color: false,
    verbose,
    columns: width,
  });
  let clock = 0;
  const reporter = progressReporter(output, () => clock);
  const events: TestEvent[] = [
    {
      type: "run-start",
      models: [
        { id: LONG_ID, sizeBytes: 4e9 },
        ...Array.from({ length: 11 }, (_, i) => ({ id: `next-${i}`, sizeBytes: 8e9 })),
      ],
    },
    { type: "model-start", id: LONG_ID, index: 0, total: 12, resumed: true },
    { type: "attempt-start", id: LONG_ID, action: "load", context: 131072 },
    { type: "attempt-start", id: LONG_ID, action: "check", context: 61043 },
    { type: "attempt", id: LONG_ID, entry: checkEntry(61043, "started", null) },
    { type: "attempt-start", id: LONG_ID, action: "check", context: 122086 },
    { type: "attempt", id: LONG_ID, entry: checkEntry(122086, "refused", REFUSAL) },
    { type: "attempt", id: LONG_ID, entry: entry({ action: "load", outcome: "loaded" }) },
    { type: "attempt-start", id: LONG_ID, action: "needle", context: 131072, promptTokens: 131008 },
    { type: "attempt", id: LONG_ID, entry: entry({ outcome: "fail" }) },
    { type: "attempt", id: LONG_ID, entry: entry({ outcome: "pass", retries: 2 }) },
    { type: "model-done", result: result({}) },
    { type: "model-start", id: "next-0", index: 1, total: 12, resumed: false },
    { type: "attempt-start", id: "next-0", action: "load", context: 32768 },
  ];
  for (const event of events) {
    clock += 61_000;
    reporter.onEvent(event);
  }
  reporter.stop();
  return stderr.text;
}

Deno.test("test progress", async (t) => {
  for (const width of [60, 80, 120]) {
    await t.step(`fits ${width} columns and never cuts a verdict`, () => {
      const lines = screenLines(runEvents(width));
      for (const line of lines) assert.ok([...line].length < width, `${width}: ${line}`);
      const attempts = lines.filter((line) => /needle|load ctx/.test(line) && !/\.\.\./.test(line));
      assert.ok(attempts.some((line) => /: loaded\b/.test(line)), lines.join("\n"));
      assert.ok(attempts.some((line) => /: fail\b/.test(line)), lines.join("\n"));
      assert.ok(attempts.some((line) => /: pass\b/.test(line)), lines.join("\n"));
      // One format for an attempt, whatever the width: the live line and the finished one.
      assert.ok(lines.some((line) => /needle 131,008 tokens in ctx 131,072\.\.\./.test(line)));
      assert.ok(lines.some((line) => /needle 131,008 tokens in ctx 131,072: pass/.test(line)));
      assert.ok(lines.every((line) => !/needle [\d,]+\//.test(line)), lines.join("\n"));
      assert.ok(lines.some((line) => /check (ctx )?61,043: started\b/.test(line)), `${lines}`);
      assert.ok(lines.some((line) => /check (ctx )?122,086: refused\b/.test(line)), `${lines}`);
      assert.ok(lines.some((line) => /check ctx 61,043\.\.\./.test(line)), `${lines}`);
      // The live line keeps the run's place, and once a model is done, the time left.
      const live = lines.filter((line) => /\.\.\./.test(line));
      assert.ok(live.every((line) => /^\[\d+\/12\] /.test(line)), live.join("\n"));
      assert.ok(live.some((line) => /^\[2\/12\] next-0: load ctx 32,768\.\.\. .*left$/.test(line)));
      assert.ok(
        live.every((line) => !/\b0 ms\b/.test(line)),
        "no 0 ms in an attempt's first second",
      );
      if (width < 120) {
        assert.ok(lines.every((line) => !line.includes(LONG_ID)), "the long name is shortened");
      }
      assert.ok(lines.some((line) => /lmstudio-c\S*…\S*imatrix/.test(line)), "from the middle");
    });
  }

  await t.step("the timing goes before the name is shortened; a short name keeps both", () => {
    const stderr = new MemorySink(true);
    const output = new Output({
      stdout: new MemorySink(false),
      stderr,
      color: false,
      columns: 100,
    });
    const reporter = progressReporter(output, () => 0);
    reporter.onEvent({ type: "attempt", id: "qwen3-8b", entry: entry({ model: "qwen3-8b" }) });
    reporter.onEvent({
      type: "attempt",
      id: "qwen2.5-7b-instruct-1m-long-name",
      entry: entry({ model: "qwen2.5-7b-instruct-1m-long-name" }),
    });
    const lines = screenLines(stderr.text);
    assert.match(
      lines[0]!,
      /^ {2}qwen3-8b: working needle .*: pass \(83\.4 s, 0 ms on this model\)$/,
    );
    assert.match(lines[1]!, /^ {2}qwen2\.5-7b-instruct-1m-long-name: working needle .*: pass$/);
  });

  await t.step("off a terminal, lines are whole", () => {
    const stderr = new MemorySink(false);
    const output = new Output({ stdout: new MemorySink(false), stderr, color: false });
    const reporter = progressReporter(output, () => 0);
    reporter.onEvent({ type: "attempt", id: LONG_ID, entry: entry({}) });
    assert.match(stderr.text, new RegExp(`^  ${LONG_ID.replaceAll(".", "\\.")}: working needle`));
  });

  await t.step("--verbose adds each attempt's answer and retries", () => {
    const plain = runEvents(120);
    const verbose = runEvents(120, true);
    assert.doesNotMatch(plain, /answer:/);
    assert.match(verbose, /answer: The special magic number is 1234567\./);
    assert.match(verbose, /retries: 2/);
    assert.match(verbose, /message: Model loading was stopped due to insufficient system/);
  });
});

Deno.test("test results", async (t) => {
  await t.step("a limit at the --max-context cap reads as a lower bound, with no reduction", () => {
    const capped = result({
      id: "big",
      declaredContext: 32768,
      loadableContext: 4096,
      workingContext: 4096,
      reductionPercent: 87.5,
    });
    const text = renderResults([capped], { maxContext: 4096 });
    assert.match(text, /^big: tested, working ≥4,096 of 32,768 declared$/m);
    assert.match(text, /^ {2}loadable ≥4,096; 4 loads, 412,000 prompt tokens$/m);
    assert.doesNotMatch(text, /less/);
  });

  await t.step("an uncapped limit shows its reduction, every number in one format", () => {
    const text = renderResults([result({ id: "small" })], { maxContext: 1_000_000 });
    assert.match(text, /^small: tested, working 98,304 of 131,072 declared \(25\.0% less\)$/m);
    assert.doesNotMatch(text, /\d+k\b/);
  });

  for (const width of [60, 80]) {
    await t.step(`fits ${width} columns`, () => {
      const error = "It did not load at 2048 tokens or more: Failed to load model: failed to " +
        "load model No LM Runtime found for model format safetensors!";
      const text = renderResults([result({}), result({ id: "broken", error })], { width });
      for (const line of text.split("\n")) assert.ok([...line].length < width, line);
      // LM Studio's words are wrapped, not cut: every word is still there, in order.
      const errorLines = text.slice(text.indexOf("  error: ")).split("\n");
      assert.ok(errorLines.length > 1);
      assert.equal(errorLines.map((l) => l.trim()).join(" "), `error: ${error}`);
      assert.match(text, /: tested, working 98,304 of 131,072 declared\b/);
      if (width >= 80) assert.match(text, /\(25\.0% less\)/);
    });
  }

  await t.step("a model with nothing measured says so, with its error", () => {
    const failed = result({
      id: "broken",
      loadableContext: null,
      workingContext: null,
      reductionPercent: null,
      status: "failed",
      loads: 2,
      promptTokens: 0,
      error: "It did not load at 2048 tokens or more",
    });
    const text = renderResults([failed]);
    assert.equal(
      text,
      "broken: failed, declared 131,072\n  2 loads, 0 prompt tokens\n" +
        "  error: It did not load at 2048 tokens or more",
    );
  });
});

Deno.test("the summary line wraps between its parts at 80 columns, a count never apart from its label", () => {
  const failed = Array.from({ length: 7 }, (_, i) => `qwen2.5-coder-${i + 7}b-instruct-mlx`);
  const summary = { tested: 140, failed: 7, kept: 600, skipped: 12, seconds: 754.2 };
  const text = renderSummary(summary, failed, 105, 80);
  const lines = text.split("\n");
  assert.ok(lines.length > 1, text);
  for (const line of lines) assert.ok([...line].length < 80, line);
  assert.ok(lines.slice(1).every((line) => line.startsWith("  ")), text);
  const joined = lines.map((line) => line.trim()).join(" ");
  assert.equal(
    joined,
    "Summary: tested 140, failed 7, kept 600, skipped 12, not done 105, took 12 min 34 s; " +
      `failed: ${failed.slice(0, 5).join(", ")}, and 2 more`,
  );
  for (const label of ["tested", "failed", "kept", "skipped", "done"]) {
    assert.ok(lines.every((line) => !line.endsWith(` ${label}`)), `"${label}" alone: ${text}`);
  }
  assert.ok(!text.includes("\u00a0"), "no no-break space reaches the terminal");
});

Deno.test("a result line keeps the reduction at 80 columns, shortening the name", () => {
  const text = renderResults([result({ id: "deepseek-r1-distill-qwen-7b-long-variant-name" })], {
    width: 80,
  });
  const [first] = text.split("\n");
  assert.ok([...first!].length < 80, first);
  assert.match(
    first!,
    /^deepseek-r1\S*…\S*: tested, working 98,304 of 131,072 declared \(25\.0% less\)$/,
  );
});

Deno.test("the time left comes from what this run's models cost: a fixed part and a part by size", async (t) => {
  const models = [1, 2, 3, 4, 8].map((gb) => ({ id: `m${gb}`, sizeBytes: gb * 1e9 }));
  /** Runs the first `done` models at `cost(gb)` ms each, then asks at the next one's start. */
  const leftAfter = (done: number, cost: (gb: number) => number) => {
    const clock = new RunClock();
    clock.start(models);
    let now = 0;
    for (const m of models.slice(0, done)) {
      clock.modelStart(m.id, now);
      now += cost(m.sizeBytes / 1e9);
      clock.modelDone(now);
    }
    clock.modelStart(models[done]!.id, now);
    return clock.leftMs(now);
  };
  await t.step("nothing before the first model is done", () => {
    assert.equal(leftAfter(0, () => 1000), undefined);
  });
  await t.step("every model costing the same: the same for each left", () => {
    assert.equal(Math.round(leftAfter(3, () => 1000)!), 2000);
  });
  await t.step("time in proportion to size: in proportion to the sizes left", () => {
    assert.equal(Math.round(leftAfter(3, (gb) => gb * 1000)!), 12_000);
  });
  await t.step("both: the fit finds each part", () => {
    assert.equal(Math.round(leftAfter(3, (gb) => 500 + gb * 1000)!), 13_000);
  });
  await t.step("read as a person reads it; no time at all in an attempt's first second", () => {
    assert.equal(formatLeft(12_000), "about 10 s left");
    assert.equal(formatLeft(1_000), "about 5 s left");
    assert.equal(formatLeft(754_000), "about 13 min left");
    assert.equal(formatLeft(4 * 3600_000 + 5 * 60_000), "about 4 h 5 min left");
    assert.equal(formatElapsed(999), "");
    assert.equal(formatElapsed(1500), "1 s");
    assert.equal(formatElapsed(125_000), "2 min 5 s");
  });
});

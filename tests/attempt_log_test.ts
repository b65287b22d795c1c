/**
 * Tests for src/registry/attempt_log.ts: typed attempt entries, one JSON line each.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { logFileFor } from "../src/paths.ts";
import {
  appendAttempt,
  type AttemptLogEntry,
  parseAttemptLine,
  readAttempts,
} from "../src/registry/attempt_log.ts";
import { withTempPaths } from "./support/records.ts";

function entry(askedContext: number, extra: Partial<AttemptLogEntry> = {}): AttemptLogEntry {
  return {
    time: "2025-01-02T03:04:05.000Z",
    model: "org/Model Q4",
    phase: "loadable",
    action: "load",
    askedContext,
    actualContext: askedContext,
    promptTokens: null,
    outcome: "loaded",
    output: null,
    durationMs: 1200,
    retries: 0,
    error: null,
    ...extra,
  };
}

Deno.test("the attempt log keeps one JSON line per attempt", async (t) => {
  await t.step("appends create the directory and read back in order", async () => {
    await withTempPaths(async (paths) => {
      assert.deepEqual(await readAttempts(paths, "org/Model Q4"), []);
      await appendAttempt(paths, "org/Model Q4", entry(4096));
      await appendAttempt(paths, "org/Model Q4", entry(8192, { outcome: "refused" }));
      const file = logFileFor(paths, "org/Model Q4");
      assert.equal(join(file, ".."), paths.logsDir);
      const lines = (await Deno.readTextFile(file)).split("\n");
      assert.equal(lines.length, 3);
      assert.equal(lines[2], "");
      assert.deepEqual(await readAttempts(paths, "org/Model Q4"), [
        entry(4096),
        entry(8192, { outcome: "refused" }),
      ]);
      assert.deepEqual(await readAttempts(paths, "org/model q4"), []);
    });
  });

  await t.step("a line cut short by a crash does not spoil the next one", async () => {
    await withTempPaths(async (paths) => {
      await appendAttempt(paths, "m", entry(1));
      await Deno.writeTextFile(logFileFor(paths, "m"), '{"time": "2', { append: true });
      await appendAttempt(paths, "m", entry(3));
      assert.deepEqual(await readAttempts(paths, "m"), [entry(1), entry(3)]);
    });
  });

  await t.step("lines that are not attempt entries are skipped", () => {
    const good = entry(2048);
    assert.deepEqual(parseAttemptLine(JSON.stringify(good)), good);
    for (const outcome of ["started", "refused"] as const) {
      const check = entry(61043, { action: "check", actualContext: null, outcome });
      assert.deepEqual(parseAttemptLine(JSON.stringify(check)), check, "a check reads back");
    }
    for (
      const bad of [
        "",
        "[1, 2]",
        '"text"',
        JSON.stringify({ n: 1 }),
        JSON.stringify({ ...good, outcome: "exploded" }),
        JSON.stringify({ ...good, askedContext: -1 }),
        JSON.stringify({ ...good, promptTokens: "many" }),
      ]
    ) {
      assert.equal(parseAttemptLine(bad), undefined, bad);
    }
  });
});

/**
 * Tests for src/registry/attempt_log.ts: typed attempt entries, one JSON line each.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { legacyFileSafeModelId, logFileFor } from "../src/paths.ts";
import {
  appendAttempt,
  type AttemptLogEntry,
  logFileToShow,
  parseAttemptLine,
  readAttempts,
} from "../src/registry/attempt_log.ts";
import { loadAttempt, withTempPaths } from "./support/records.ts";

function entry(askedContext: number, extra: Partial<AttemptLogEntry> = {}): AttemptLogEntry {
  return loadAttempt(askedContext, {
    time: "2025-01-02T03:04:05.000Z",
    model: "org/Model Q4",
    durationMs: 1200,
    ...extra,
  });
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

Deno.test("a model reads only its own attempts, also from a log an older version shared", async () => {
  await withTempPaths(async (paths) => {
    // Older versions named both logs `a_b-<hash>`: `a/b` and the model called exactly that.
    const twin = legacyFileSafeModelId("a/b");
    assert.notEqual(logFileFor(paths, "a/b"), logFileFor(paths, twin), "two files now");
    await Deno.mkdir(paths.logsDir, { recursive: true });
    const shared = join(paths.logsDir, `${twin}_context_test.log`);
    const old = [entry(1, { model: "a/b" }), entry(2, { model: twin }), entry(3, { model: "a/b" })];
    await Deno.writeTextFile(shared, old.map((e) => JSON.stringify(e) + "\n").join(""));

    assert.deepEqual(await readAttempts(paths, "a/b"), [old[0], old[2]]);
    assert.deepEqual(await readAttempts(paths, twin), [old[1]]);
    // New attempts go to each model's own file and read after the old ones.
    await appendAttempt(paths, "a/b", entry(4, { model: "a/b" }));
    await appendAttempt(paths, twin, entry(5, { model: twin }));
    assert.deepEqual(await readAttempts(paths, "a/b"), [
      old[0],
      old[2],
      entry(4, { model: "a/b" }),
    ]);
    assert.deepEqual(await readAttempts(paths, twin), [old[1], entry(5, { model: twin })]);
    assert.equal(
      await Deno.readTextFile(shared),
      old.map((e) => JSON.stringify(e) + "\n").join(""),
    );
  });
});

Deno.test("a linked context_tests folder is not written through", async () => {
  await withTempPaths(async (paths) => {
    const outside = await Deno.makeTempDir({ prefix: "lmstrix-outside-" });
    try {
      await Deno.mkdir(join(paths.logsDir, ".."), { recursive: true });
      await Deno.symlink(outside, paths.logsDir);
      await assert.rejects(() => appendAttempt(paths, "m", entry(1)), /symbolic link/);
      assert.deepEqual([...Deno.readDirSync(outside)], []);
    } finally {
      await Deno.remove(outside, { recursive: true });
    }
  });
});

Deno.test("show names the log an older version wrote when this one has not written its own", async () => {
  await withTempPaths(async (paths) => {
    const legacy = join(paths.logsDir, `${legacyFileSafeModelId("a/b")}_context_test.log`);
    assert.equal(await logFileToShow(paths, "a/b"), logFileFor(paths, "a/b"), "none yet: the new");
    await Deno.mkdir(paths.logsDir, { recursive: true });
    await Deno.writeTextFile(legacy, JSON.stringify(entry(1, { model: "a/b" })) + "\n");
    assert.equal(await logFileToShow(paths, "a/b"), legacy);
    await appendAttempt(paths, "a/b", entry(2, { model: "a/b" }));
    assert.equal(await logFileToShow(paths, "a/b"), logFileFor(paths, "a/b"));
  });
});

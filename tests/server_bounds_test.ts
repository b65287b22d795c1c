/**
 * What a server sends is read with bounds: an answer that never ends is read up to the tokens
 * asked for, cancelled, and kept within a bound; a prediction's deadline has a ceiling; a message
 * too large for the socket is a server problem (exit 3, one plain line). Against the emulator and
 * a hand-made hostile server, through the real SDK.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connectLmStudio, DEFAULT_TIMEOUTS, timeoutsFromSeconds } from "../src/lmstudio/client.ts";
import { keptChars, PREDICT_CEILING_MS, predictionDeadlineMs } from "../src/lmstudio/prediction.ts";
import { runCli, tempHome } from "./support/cli.ts";
import { testProfile, withEmulator, within } from "./support/emulator.ts";
import { withHugeFrameServer } from "./support/huge_frame_server.ts";

Deno.test("an answer that never ends is read up to maxTokens, cancelled, and kept bounded", async () => {
  await withEmulator([testProfile("tiny", { declaredContext: 8192 })], async (emulator) => {
    const lms = await connectLmStudio(emulator.url);
    try {
      const load = await lms.load("tiny", 4096, { identifier: "lmstrix-endless" });
      assert.equal(load.kind, "loaded");
      if (load.kind !== "loaded") return;
      emulator.injectFaults({ endlessNextPredict: true });
      const answer = await within(
        load.model.complete("2+2=", { maxTokens: 64, promptTokens: 5 }),
        15_000,
        "an endless prediction",
      );
      assert.ok(answer.text.length > 0);
      assert.ok(answer.text.length <= keptChars(64), `${answer.text.length} characters kept`);
      const record = emulator.stats().predictions.at(-1)!;
      assert.equal(record.stopReason, "userStopped", "the prediction was cancelled");
      assert.ok(record.predictedTokens < 64 * 50, `${record.predictedTokens} tokens streamed`);
      // The model still answers normally afterwards.
      const next = await load.model.complete("2+2=", { maxTokens: 8, promptTokens: 5 });
      assert.match(next.text, /4/);
      await load.model.unload();
    } finally {
      await lms.close();
    }
  });
});

Deno.test("a prediction's deadline grows with the prompt up to a ceiling", () => {
  const base = DEFAULT_TIMEOUTS.predictBaseMs;
  assert.equal(predictionDeadlineMs(DEFAULT_TIMEOUTS, 1000), base + 1000 * 15);
  assert.equal(predictionDeadlineMs(DEFAULT_TIMEOUTS, 131_072), base + 131_072 * 15);
  assert.equal(predictionDeadlineMs(DEFAULT_TIMEOUTS, 1_048_576), PREDICT_CEILING_MS);
  // A base deadline above the ceiling (--timeout 3600) is the user's: it wins.
  assert.equal(predictionDeadlineMs(timeoutsFromSeconds(3600), 1_048_576), 3_600_000);
});

Deno.test("a message too large for the socket is a server problem: exit 3, one plain line", async () => {
  await using home = await tempHome();
  await withHugeFrameServer(async (url) => {
    for (const args of [["scan"], ["scan", "--json"]]) {
      const run = await runCli([...args, "--server", url, "--timeout", "10"], { home: home.path });
      assert.equal(run.code, 3, run.stderr);
      assert.doesNotMatch(run.stderr, /Unexpected failure|at .*\.ts:\d+/);
      if (args.includes("--json")) {
        const doc = JSON.parse(run.stdout);
        assert.equal(doc.error.exitCode, 3);
        assert.match(doc.error.message, /larger than/);
      } else {
        assert.match(run.stderr, /^error: .*sent a message larger than 100 MiB/m);
      }
    }
  });
});

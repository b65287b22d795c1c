/**
 * `list` at 80 columns, as most terminals open: the bar stays (the reduction and the size give way
 * first), and a sort by a column that would be left out keeps that column, so the order can be
 * seen.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runCliAgainst, tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";

const SHELF = [
  testProfile("text-embedding-nomic-embed-text-v1.5", { declaredContext: 2048, sizeBytes: 84e6 }),
  testProfile("qwen2.5-7b-instruct-1m", { declaredContext: 1_048_576, loadFailAbove: 200_000 }),
  testProfile("lmstudio-community/Meta-Llama-3.1-8B-Instruct-GGUF", {
    declaredContext: 131072,
    sizeBytes: 9e9,
  }),
].map((p) => p.modelKey.startsWith("text-") ? { ...p, type: "embedding" as const } : p);

Deno.test("list at 80 columns keeps the bar, and the column it is sorted by", async (t) => {
  await using home = await tempHome();
  await withEmulator(SHELF, async (emulator) => {
    const list = async (...args: string[]) => {
      const run = await runCliAgainst(emulator.url, home.path, ["list", ...args], {
        COLUMNS: "80",
      });
      assert.equal(run.code, 0, run.stderr);
      const lines = run.stdout.trimEnd().split("\n");
      for (const line of lines) assert.ok([...line].length <= 80, line);
      return lines;
    };
    assert.equal((await runCliAgainst(emulator.url, home.path, ["scan"])).code, 0);
    await t.step("the bar stays; the reduction and the size give way", async () => {
      const [head] = await list();
      assert.match(head!, /^model +declared +loadable +working +status +context$/);
    });
    await t.step("--sort size shows the size, smallest first", async () => {
      const [head, ...rows] = await list("--sort", "size");
      assert.match(head!, /\bsize\b/);
      const sizes = rows.map((r) => /(\d+(?:\.\d+)?) (MiB|GiB)/.exec(r)!).map((m) =>
        Number(m[1]) * (m[2] === "GiB" ? 1024 : 1)
      );
      assert.deepEqual(sizes, [...sizes].sort((a, b) => a - b));
      assert.equal(sizes.length, SHELF.length);
    });
    await t.step("--sort reduction shows the reduction", async () => {
      const [head] = await list("--sort", "reduction", "--reverse");
      assert.match(head!, /\breduction\b/);
    });
  });
});

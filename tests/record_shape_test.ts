/**
 * One model, one record: `scan --json`, `list --json`, `show --json` and the library show the same
 * record (the contract's keys with `type`, `reductionPercent` and `displayName`), and the embedding
 * model is `skipped` in all of them and in the tables, never `untested`.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import { LMStrix } from "../mod.ts";
import { runCliAgainst, tempHome } from "./support/cli.ts";
import { RECORD_KEYS, RECORD_STATUSES } from "./support/contract.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";

const SHELF: ModelProfile[] = [
  testProfile("gemma-2-9b-it", {
    displayName: "Gemma 2 9B Instruct",
    declaredContext: 8192,
    needleFailAbove: 5_300,
    needleFailMode: "wrong-number",
  }),
  testProfile("qwen3-8b", { displayName: "Qwen3 8B", declaredContext: 16384 }),
  {
    ...testProfile("text-embedding-nomic-embed-text-v1.5", {
      displayName: "Nomic Embed Text v1.5",
      declaredContext: 2048,
    }),
    type: "embedding",
    architecture: "nomic-bert",
  },
];

type Json = Record<string, unknown>;

Deno.test("list, scan and show print one record shape; an embedding model is skipped everywhere", async (t) => {
  await using home = await tempHome();
  await withEmulator(SHELF, async (emulator) => {
    const cli = async (args: string[]) => {
      const run = await runCliAgainst(emulator.url, home.path, args, { COLUMNS: "80" });
      assert.equal(run.code, 0, run.stderr);
      return run;
    };
    const scanned = JSON.parse((await cli(["scan", "--json"])).stdout).models as Json[];
    await cli(["test", "gemma-2-9b-it"]);
    const listed = JSON.parse((await cli(["list", "--json"])).stdout).models as Json[];
    const shown: Json[] = [];
    for (const { modelKey } of SHELF) {
      shown.push(JSON.parse((await cli(["show", modelKey, "--json"])).stdout));
    }
    const library = await new LMStrix({ server: emulator.url, lmstudioDir: home.path }).list();

    await t.step("every record has the contract's keys, in order, and a known status", () => {
      for (const record of [...scanned, ...listed, ...shown, ...(library as unknown as Json[])]) {
        assert.deepEqual(Object.keys(record).slice(0, RECORD_KEYS.length), RECORD_KEYS);
        assert.ok(RECORD_STATUSES.includes(String(record.status)), String(record.status));
      }
      for (const record of [...scanned, ...listed, ...(library as unknown as Json[])]) {
        assert.deepEqual(Object.keys(record).filter((k) => !RECORD_KEYS.includes(k)), [
          ...(listed.includes(record) ? ["costs", "applied"] : []),
        ]);
      }
    });
    await t.step("list --json, show --json and the library agree on every contract key", () => {
      for (const { modelKey, displayName, type } of SHELF) {
        const pick = (records: Json[]) => {
          const record = records.find((r) => r.id === modelKey)!;
          return Object.fromEntries(RECORD_KEYS.map((k) => [k, record[k]]));
        };
        const fromList = pick(listed);
        assert.deepEqual(pick(shown), fromList);
        assert.deepEqual(pick(library as unknown as Json[]), fromList);
        assert.equal(fromList.type, type);
        assert.equal(fromList.displayName, displayName);
      }
      const gemma = pick1(listed, "gemma-2-9b-it");
      assert.equal(gemma.status, "tested");
      const working = gemma.workingContext as number;
      assert.equal(gemma.reductionPercent, Math.round((1 - working / 8192) * 1000) / 10);
      assert.equal(pick1(listed, "qwen3-8b").reductionPercent, null);
    });
    await t.step("the embedding model is skipped in JSON, list, csv and show", async () => {
      const id = "text-embedding-nomic-embed-text-v1.5";
      for (const records of [scanned, listed, shown, library as unknown as Json[]]) {
        assert.equal(pick1(records, id).status, "skipped");
      }
      const table = (await cli(["list"])).stdout;
      assert.match(table, /^text-embedding\S* .* skipped$/m);
      assert.doesNotMatch(table, / embedding$/m);
      const csv = (await cli(["list", "--format", "csv"])).stdout;
      assert.match(csv, new RegExp(`^${id.replaceAll(".", "\\.")},.*,embedding,skipped,`, "m"));
      assert.match((await cli(["show", id])).stdout, /^status +skipped \(an embedding model/m);
      // A script that picks untested models picks the untested LLM only.
      const untested = listed.filter((r) => r.status === "untested").map((r) => r.id);
      assert.deepEqual(untested, ["qwen3-8b"]);
    });
  });
});

function pick1(records: Json[], id: string): Json {
  const record = records.find((r) => r.id === id);
  assert.ok(record, id);
  return record;
}

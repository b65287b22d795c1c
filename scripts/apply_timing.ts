/**
 * Times `apply --all` and `apply --undo --all` on a made-up shelf of N models, each with an LM
 * Studio config file, through the library in this process (no CLI start-up in the figure). It
 * checks that undo put every file back byte for byte, so a fast wrong undo cannot pass.
 *
 *   deno run --allow-read --allow-write --allow-env --allow-sys=osUptime \
 *     scripts/apply_timing.ts 2000 4000
 *
 * @module
 */

import { dirname, join } from "node:path";
import { applyContextLimits } from "../src/apply/apply.ts";
import { lmstrixPaths } from "../src/paths.ts";
import { newModelRecord } from "../src/registry/model_record.ts";
import { emptyRegistry, saveRegistry } from "../src/registry/registry.ts";
import { writeAll } from "../src/write_all.ts";

const config = (i: number) =>
  `{"preset":"","operation":{"fields":[]},"load":{"fields":[` +
  `{"key":"llm.load.llama.flashAttention","value":${i % 2 === 0}},` +
  `{"key":"llm.load.contextLength","value":${4096 + i}}]}}\n`;

async function shelf(home: string, n: number): Promise<string[]> {
  const registry = emptyRegistry();
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `pub-${i % 50}/model-${i}`;
    const path = `pub-${i % 50}/Model-${i}-GGUF/model-${i}.gguf`;
    const record = newModelRecord({
      id,
      path,
      sizeBytes: 1_000_000,
      architecture: "llama",
      declaredContext: 131_072,
      type: "llm",
    });
    record.status = "tested";
    record.loadableContext = record.workingContext = 8_000 + i;
    record.testedAt = "2026-12-07T00:00:00.000Z";
    registry.models[id] = record;
    const file = join(home, ".internal", "user-concrete-model-default-config", path) + ".json";
    await Deno.mkdir(dirname(file), { recursive: true });
    await Deno.writeTextFile(file, config(i));
    files.push(file);
  }
  await saveRegistry(lmstrixPaths(home), registry);
  return files;
}

async function time(work: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await work();
  return (performance.now() - start) / 1000;
}

const sizes = Deno.args.length > 0 ? Deno.args.map(Number) : [2000, 4000];
for (const n of sizes) {
  const home = await Deno.makeTempDir({ prefix: "lmstrix-apply-timing-" });
  try {
    const files = await shelf(home, n);
    const paths = lmstrixPaths(home);
    const apply = await time(() => applyContextLimits(paths, "all"));
    const undo = await time(() => applyContextLimits(paths, "all", { undo: true }));
    let mismatches = 0;
    for (const [i, file] of files.entries()) {
      if (await Deno.readTextFile(file) !== config(i)) mismatches++;
    }
    const line = `${n} models: apply ${apply.toFixed(1)} s, undo ${undo.toFixed(1)} s, ` +
      `${mismatches} files not restored\n`;
    await writeAll(Deno.stdout, new TextEncoder().encode(line));
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

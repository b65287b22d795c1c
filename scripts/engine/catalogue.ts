/**
 * The models the engine serves: GGUF files under a models folder laid out as LM Studio lays
 * them, `<publisher>/<repo>/<file>.gguf`, each described from its own header (declared context,
 * architecture, parameters) as LM Studio's model listing describes it.
 *
 * @module
 */

import { join, relative } from "node:path";
import { type GgufSummary, readGgufSummary } from "./gguf.ts";
import type { Json } from "../protocol/wire.ts";

/** One model file. */
export interface EngineModel {
  /** LM Studio's model key: the repo folder's name, lower case. */
  modelKey: string;
  /** `<publisher>/<repo>/<file>.gguf`, as LM Studio's `path`. */
  path: string;
  /** Absolute path of the file. */
  file: string;
  sizeBytes: number;
  gguf: GgufSummary;
}

const FILE_TYPES: Record<number, [string, number]> = {
  0: ["F32", 32],
  1: ["F16", 16],
  2: ["Q4_0", 4],
  7: ["Q8_0", 8],
  15: ["Q4_K_M", 4],
};

/** "1.2M", "7B": LM Studio's short parameter count. */
function paramsString(parameters: number): string {
  if (parameters >= 1e9) return `${(parameters / 1e9).toFixed(1).replace(/\.0$/, "")}B`;
  if (parameters >= 1e6) return `${(parameters / 1e6).toFixed(1).replace(/\.0$/, "")}M`;
  return `${Math.round(parameters / 1e3)}K`;
}

/** Finds the models under `root` (three levels deep, as LM Studio looks). */
export async function readCatalogue(root: string): Promise<EngineModel[]> {
  const found: EngineModel[] = [];
  const keys = new Set<string>();
  const entries = async (dir: string) => {
    const out: Deno.DirEntry[] = [];
    for await (const entry of Deno.readDir(dir)) out.push(entry);
    return out.sort((a, b) => a.name.localeCompare(b.name));
  };
  for (const publisher of await entries(root)) {
    if (!publisher.isDirectory) continue;
    for (const repo of await entries(join(root, publisher.name))) {
      if (!repo.isDirectory) continue;
      for (const file of await entries(join(root, publisher.name, repo.name))) {
        if (!file.isFile || !file.name.toLowerCase().endsWith(".gguf")) continue;
        const absolute = join(root, publisher.name, repo.name, file.name);
        let key = repo.name.toLowerCase();
        for (let n = 2; keys.has(key); n++) key = `${repo.name.toLowerCase()}-${n}`;
        keys.add(key);
        found.push({
          modelKey: key,
          path: relative(root, absolute).replaceAll("\\", "/"),
          file: absolute,
          sizeBytes: (await Deno.stat(absolute)).size,
          gguf: await readGgufSummary(absolute),
        });
      }
    }
  }
  return found;
}

/** The model's entry in `listDownloadedModels`. */
export function modelInfo(model: EngineModel): Json {
  const [name, bits] = FILE_TYPES[model.gguf.fileType ?? -1] ?? ["unknown", 0];
  return {
    type: "llm",
    modelKey: model.modelKey,
    format: "gguf",
    displayName: model.gguf.name ?? model.modelKey,
    path: model.path,
    sizeBytes: model.sizeBytes,
    paramsString: paramsString(model.gguf.parameters),
    architecture: model.gguf.architecture,
    quantization: { name, bits },
    maxContextLength: model.gguf.declaredContext,
    vision: false,
    trainedForToolUse: false,
  };
}

/**
 * LM Studio homes for the `apply` tests: a registry of models with the limits a test gives and,
 * where given, each model's LM Studio config file with the content the test starts from.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { lmstrixPaths } from "../../src/paths.ts";
import { type ModelRecord, newModelRecord } from "../../src/registry/model_record.ts";
import { emptyRegistry, saveRegistry } from "../../src/registry/registry.ts";

/** A model of a fixture home. */
export interface FixtureModel {
  id: string;
  path: string;
  status: ModelRecord["status"];
  working: number | null;
  type?: ModelRecord["type"];
  /** The config file's content before the test, or absent. */
  config?: string;
}

/** The LM Studio config file of a model at `modelPath` in `home`. */
export function configFile(home: string, modelPath: string): string {
  return join(home, ".internal", "user-concrete-model-default-config", ...modelPath.split("/")) +
    ".json";
}

/** Builds the registry and the config files of `fleet` in `home`. */
export async function buildApplyHome(home: string, fleet: FixtureModel[]): Promise<void> {
  const registry = emptyRegistry();
  for (const model of fleet) {
    const record = newModelRecord({
      id: model.id,
      path: model.path,
      sizeBytes: 1_000_000,
      architecture: "llama",
      declaredContext: 131_072,
      type: model.type ?? "llm",
    });
    record.status = model.status;
    record.workingContext = model.working;
    record.loadableContext = model.working;
    if (model.status === "tested") record.testedAt = "2026-11-25T13:44:36.684Z";
    if (model.status === "failed") record.error = "It did not load at 2048 tokens or more";
    registry.models[model.id] = record;
    if (model.config !== undefined) {
      const file = configFile(home, model.path);
      await Deno.mkdir(dirname(file), { recursive: true });
      await Deno.writeTextFile(file, model.config);
    }
  }
  await saveRegistry(lmstrixPaths(home), registry);
}

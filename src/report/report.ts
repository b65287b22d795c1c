/**
 * Makes the report page from the registry's records and their attempt logs (read only: the
 * report needs no lock and no LM Studio).
 *
 * @module
 */

import config from "../../deno.json" with { type: "json" };
import type { LmstrixPaths } from "../paths.ts";
import { logFileFor } from "../paths.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import { evidenceOf } from "./evidence.ts";
import { renderReport } from "./html.ts";

/** The report page of `records`, with the evidence in their attempt logs under `paths`. */
export async function buildReport(
  paths: Pick<LmstrixPaths, "logsDir">,
  records: readonly ModelRecord[],
  generatedAt: Date,
): Promise<string> {
  const models = [];
  for (const record of records) {
    let text = "";
    try {
      text = await Deno.readTextFile(logFileFor(paths, record.id));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    models.push({ record, evidence: evidenceOf(text) });
  }
  return renderReport({ models, generatedAt, version: config.version });
}

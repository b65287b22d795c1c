/** `lmstrix scan`: discovers the models in LM Studio and merges them into the registry. */

import type { LMStrix } from "../lmstrix.ts";
import type { Output } from "../output.ts";

/** Runs `scan`. */
export async function runScan(lmstrix: LMStrix, output: Output): Promise<number> {
  output.info(`Scanning LM Studio for models...`);
  const result = await lmstrix.scan();
  if (output.json) {
    output.document(result);
    return 0;
  }
  // --quiet: nothing on success (cron); the registry holds the result.
  if (output.quiet) return 0;
  const present = result.models.filter((m) => m.status !== "missing").length;
  output.data(
    `Found ${present} model${present === 1 ? "" : "s"} at ${result.server}: ` +
      `${result.added.length} new, ${result.updated.length} updated, ${result.missing.length} missing.`,
  );
  for (const id of result.added) output.data(`  + ${id}`);
  for (const id of result.missing) output.data(`  - ${id} (missing; its results are kept)`);
  output.info(`Registry: ${lmstrix.paths.registry}`);
  return 0;
}

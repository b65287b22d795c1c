/** `lmstrix scan`: discovers the models in LM Studio and merges them into the registry. */

import type { LMStrix } from "../lmstrix.ts";
import { displayText, type Output } from "../output.ts";

/** Options of `scan` as the command line gives them. */
export interface ScanCommandOptions {
  /** Base deadline of each call to LM Studio, in seconds (`--timeout`). */
  timeoutSeconds?: number | undefined;
}

/**
 * Runs `scan`. The summary and the models it names are results: `--quiet` keeps them (a cron log
 * says what the night's scan found) and drops only the progress lines.
 */
export async function runScan(
  lmstrix: LMStrix,
  output: Output,
  options: ScanCommandOptions = {},
): Promise<number> {
  const registry = lmstrix.paths.registry; // A bad LM Studio home is refused before anything.
  output.info(`Scanning LM Studio for models...`);
  const result = await lmstrix.scan(options);
  if (output.json) {
    output.document(result);
    return 0;
  }
  const present = result.models.filter((m) => m.status !== "missing").length;
  output.data(
    `Found ${present} model${present === 1 ? "" : "s"} at ${displayText(result.server)}: ` +
      `${result.added.length} new, ${result.updated.length} updated, ${result.missing.length} missing.`,
  );
  for (const id of result.added) output.data(`  + ${displayText(id)}`);
  for (const change of result.changes) {
    output.data(`  ~ ${displayText(change.id)}: ${displayText(change.what.join(", "))}`);
    if (change.stale) {
      output.data(`    its file changed: earlier results kept as stale, to be tested again`);
    }
  }
  for (const { id, problem } of result.invalid) {
    output.data(`  ! ${displayText(id)}: ${displayText(problem)}; kept as failed`);
  }
  for (const id of result.missing) {
    output.data(`  - ${displayText(id)} (missing; its results are kept)`);
  }
  output.info(`Registry: ${displayText(registry)}`);
  return 0;
}

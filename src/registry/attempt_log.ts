/**
 * Per-model attempt logs: `context_tests/<file-safe id>_context_test.log`, one JSON object a
 * line, one line per attempt, appended as the search goes.
 *
 * A crash can cut the last line short. Appending first ends such a line, so the damage stays in
 * that one line, and reading skips lines that are not JSON objects.
 *
 * @module
 */

import type { LmstrixPaths } from "../paths.ts";
import { logFileFor } from "../paths.ts";

/** Appends `entry` as one JSON line to the attempt log of `modelId`, creating what is missing. */
export async function appendAttempt(
  paths: Pick<LmstrixPaths, "logsDir">,
  modelId: string,
  entry: object,
): Promise<void> {
  const file = logFileFor(paths, modelId);
  await Deno.mkdir(paths.logsDir, { recursive: true });
  const line = JSON.stringify(entry) + "\n";
  const handle = await Deno.open(file, { append: true, create: true, read: true });
  try {
    const prefix = (await endsWithoutNewline(handle)) ? "\n" : "";
    const bytes = new TextEncoder().encode(prefix + line);
    let written = 0;
    while (written < bytes.length) written += await handle.write(bytes.subarray(written));
  } finally {
    handle.close();
  }
}

/**
 * Reads the attempt log of `modelId`, oldest first: every line that is a JSON object. A missing
 * log gives an empty list.
 */
export async function readAttempts(
  paths: Pick<LmstrixPaths, "logsDir">,
  modelId: string,
): Promise<Record<string, unknown>[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(logFileFor(paths, modelId));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const entries: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        entries.push(value as Record<string, unknown>);
      }
    } catch {
      // A line cut short by a crash; the lines around it are intact.
    }
  }
  return entries;
}

async function endsWithoutNewline(handle: Deno.FsFile): Promise<boolean> {
  const size = (await handle.stat()).size;
  if (size === 0) return false;
  await handle.seek(-1, Deno.SeekMode.End);
  const last = new Uint8Array(1);
  const read = await handle.read(last);
  return read === 1 && last[0] !== 0x0a;
}

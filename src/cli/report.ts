/**
 * `lmstrix report [--out FILE]`: writes the report page (see `src/report/`) and prints its path
 * on stdout (`--json`: `{ "report": "<path>" }`); how big it is, and how many models it charts,
 * on stderr. The file is replaced atomically: a browser that has it open never reads half a page.
 */

import { join, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import type { LMStrix } from "../lmstrix.ts";
import type { Output } from "../output.ts";
import { requirePermissions } from "../permissions.ts";
import { writeFileAtomic } from "../registry/atomic_write.ts";
import { pathFailure } from "./file_errors.ts";

/** The report's file name when `--out` is not given (or names a directory). */
export const DEFAULT_REPORT_FILE = "lmstrix-report.html";

/** Options of `report`. */
export interface ReportCommandOptions {
  out?: string;
}

/** Where the report goes: `--out` (a directory gets the default name in it), else the cwd. */
export async function reportPath(out: string | undefined, cwd: string): Promise<string> {
  const target = resolve(cwd, out ?? DEFAULT_REPORT_FILE);
  try {
    if ((await Deno.stat(target)).isDirectory) return join(target, DEFAULT_REPORT_FILE);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return target;
}

/** Runs `report`. */
export async function runReport(
  lmstrix: LMStrix,
  output: Output,
  options: ReportCommandOptions,
): Promise<number> {
  const file = await reportPath(options.out, Deno.cwd());
  requirePermissions([{ name: "write", path: file }]);
  const html = await lmstrix.report();
  try {
    await writeFileAtomic(file, html);
  } catch (error) {
    throw cannotWrite(file, error);
  }
  const models = (html.match(/<tr data-model=/g) ?? []).length;
  const charts = (html.match(/<article /g) ?? []).length;
  output.info(
    `Wrote the report of ${models} model${models === 1 ? "" : "s"} (${charts} with ` +
      `their probes), ${Math.ceil(new TextEncoder().encode(html).length / 1024)} kB`,
  );
  if (output.json) output.document({ report: file });
  else output.data(file);
  return ExitCode.ok;
}

/** A write that failed, told as the place the user named. */
function cannotWrite(file: string, error: unknown): unknown {
  const why = pathFailure(error, [
    [Deno.errors.NotFound, "its directory does not exist"],
    [Deno.errors.PermissionDenied, "permission denied"],
    [Deno.errors.NotADirectory, "a part of that path is a file, not a directory"],
  ]);
  if (why === null) return error;
  return new UsageError(`Cannot write the report to "${file}": ${why}`, {
    hint: "pass --out with a file in a directory you can write to",
  });
}

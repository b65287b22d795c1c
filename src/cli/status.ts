/** `lmstrix status`: counts by status, and who holds the lock. */

import { appliedSummaries } from "../apply/applied_store.ts";
import type { LMStrix } from "../lmstrix.ts";
import { displayText, type Output, wrapWords } from "../output.ts";

/** Runs `status`. */
export async function runStatus(lmstrix: LMStrix, output: Output): Promise<number> {
  const report = await lmstrix.status();
  const summaries = [
    ...appliedSummaries(lmstrix.paths, await lmstrix.records(), (m) => output.warn(m)).values(),
  ];
  const applied = summaries.length;
  const appliedStale = summaries.filter((a) => a.state === "stale").length;
  if (output.json) {
    const { total, untested, testing, tested, failed, lock, missing, embeddings } = report;
    output.document({
      total,
      untested,
      testing,
      tested,
      failed,
      lock,
      missing,
      embeddings,
      applied,
      appliedStale,
    });
    return 0;
  }
  const others = [
    report.embeddings ? `${report.embeddings} embedding model${plural(report.embeddings)}` : "",
    report.missing ? `${report.missing} missing from LM Studio` : "",
  ].filter(Boolean);
  const lines = [
    `LLMs: ${report.total} (${report.tested} tested, ${report.untested} untested, ` +
    `${report.testing} testing, ${report.failed} failed)`,
    ...(others.length > 0 ? [`Also: ${others.join(", ")}`] : []),
    report.lock
      ? `Lock: held by pid ${report.lock.pid ?? "?"} since ${report.lock.startedAt ?? "?"}`
      : "Lock: free",
    `Registry: ${displayText(report.registry)}`,
  ];
  if (applied > 0) {
    lines.splice(
      1,
      0,
      `Applied: ${applied} in LM Studio's defaults` +
        (appliedStale
          ? `, ${appliedStale} from an earlier test ("lmstrix apply --all" updates)`
          : ""),
    );
  }
  output.data(lines.flatMap((line) => wrapWords(line, "  ", output.columns, "")).join("\n"));
  return 0;
}

function plural(n: number): string {
  return n === 1 ? "" : "s";
}

/**
 * The report page (`lmstrix report`): one self-contained HTML file that shows the shelf (every
 * model's declared, loadable and working context on one axis, its status, when it was tested)
 * and, for each model with attempts, the evidence its numbers rest on (the probe chart of
 * `svg.ts`) with the bracket around each limit: the largest size that passed and the smallest
 * that failed above it.
 *
 * Self-contained by construction: styles inline, pictures as inline SVG, no script, no font, no
 * image file; its Content-Security-Policy (`default-src 'none'`) forbids the browser any request
 * at all, so the page cannot reach the network even if some text in it tried. Pure: the caller
 * hands in the records, the evidence and the time.
 *
 * @module
 */

import { RESERVE_TOKENS } from "../contract.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import { escapeHtml, escapeShort } from "./escape.ts";
import type { DrawnAttempt, Evidence } from "./evidence.ts";
import { probeChartSvg, shelfAxisSvg, shelfBarSvg, shelfScale } from "./svg.ts";

/** One model of the report: its record and the attempts drawn from its log. */
export interface ReportModel {
  record: ModelRecord;
  evidence: Evidence;
}

/** What the page shows. */
export interface ReportInput {
  models: readonly ReportModel[];
  /** When the report was made. */
  generatedAt: Date;
  /** LMStrix's version, for the footer. */
  version: string;
}

/** The page's policy: nothing may be fetched; only the inline styles apply. */
export const CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'";

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1f2328;
background:#fff;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:22px 0 2px;font-family:ui-monospace,monospace}
table{border-collapse:collapse}th,td{padding:2px 8px;text-align:left;vertical-align:middle}
td.t{white-space:nowrap;font-size:12px;color:#57606a}
th{font-weight:600;border-bottom:1px solid #d0d7de;font-size:12px}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(odd){background:#f6f8fa}
td.id{font-family:ui-monospace,monospace;font-size:12px;min-width:180px;max-width:300px;
overflow-wrap:anywhere}
.s-tested{color:#1a7f37}.s-failed{color:#cf222e}.s-untested,.s-skipped,.s-missing{color:#6e7781}
.err{color:#cf222e;font-size:12px}.note{color:#57606a;font-size:12px;margin:2px 0}
svg text{font-size:10px;fill:#57606a}svg{display:block}
.grid path,.gl{stroke:#eaeef2}.d{fill:#d0d7de}.l{fill:#54aeff}.w{fill:#1a7f37}
.lim{stroke-width:1.5}.lim.d{stroke:#8c959f;stroke-dasharray:4 3}.lim.l{stroke:#0969da}
.lim.w{stroke:#1a7f37}text.d{fill:#6e7781}text.l{fill:#0969da}text.w{fill:#1a7f37}
.ok{fill:#1a7f37}.no{fill:#cf222e}.fit{fill:#bf8700}.cr{fill:#1f2328}.st{fill:#fff;stroke:#1a7f37}
.ck{stroke-width:1.5}.ck.ok{fill:#fff;stroke:#1a7f37}.ck.no{fill:#fff;stroke:#cf222e}
.one{stroke:#8250df;stroke-width:2}.inst{stroke:#afb8c1;stroke-dasharray:2 2}
.fitline{stroke:#bf8700}.rl{font-style:italic}
.legend svg{display:inline-block;vertical-align:middle}
`;

const fmt = (n: number | null) => n === null ? "-" : n.toLocaleString("en-US");

/** A limit as the record holds it: "≥" where it is only the `--max-context` cap of its test. */
function limit(record: ModelRecord, value: number | null): string {
  return value !== null && value === record.cappedAt ? `&ge;${fmt(value)}` : fmt(value);
}

/** When, as people read it: `2026-12-07 19:40 UTC`. */
function when(iso: string | null): string {
  if (iso === null) return "-";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return escapeHtml(iso);
  return date.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** The status a person reads: an embedding model is skipped, never untested (the contract). */
function statusOf(record: ModelRecord): string {
  return record.type === "embedding" ? "skipped" : record.status;
}

/** The attempts the chart draws: the latest search, then the one-size checks. */
function drawn(evidence: Evidence): DrawnAttempt[] {
  return [...evidence.search, ...evidence.checks];
}

/** The smallest size above `limit` that the attempts show failing, for `kind` of limit. */
function failedAbove(
  attempts: readonly DrawnAttempt[],
  limit: number,
  kind: "loadable" | "working",
): number | null {
  let least: number | null = null;
  for (const a of attempts) {
    let size: number | null = null;
    const load = a.action === "load" || a.action === "check";
    if (load && (a.outcome === "refused" || a.outcome === "fitted" || a.outcome === "crashed")) {
      size = a.askedContext;
    } else if (kind === "working" && a.action === "needle" && a.outcome !== "pass") {
      size = (a.promptTokens ?? a.askedContext) + RESERVE_TOKENS;
    }
    if (size !== null && size > limit && (least === null || size < least)) least = size;
  }
  return least;
}

/** How sure a limit is: the smallest failure above it, or that nothing above it failed. */
function bracket(
  attempts: readonly DrawnAttempt[],
  limit: number | null,
  kind: "loadable" | "working",
  capped: number | undefined,
): string {
  if (limit === null) return "";
  const above = failedAbove(attempts, limit, kind);
  if (above === null) {
    return `${kind} ${fmt(limit)}: nothing above it was seen to fail` +
      (limit === capped ? " (the test's --max-context: the true limit may be higher)" : "");
  }
  return `${kind} ${fmt(limit)}: the smallest size seen failing above it is ${fmt(above)} ` +
    `(${fmt(above - limit)} more)`;
}

function shelfRow(record: ModelRecord, index: number, bar: string, charted: boolean): string {
  const id = escapeHtml(record.id);
  const status = statusOf(record);
  const name = charted ? `<a href="#m${index}">${id}</a>` : id;
  const error = record.error
    ? `<div class="err" title="${escapeHtml(record.error)}">${escapeShort(record.error, 90)}</div>`
    : "";
  return `<tr data-model="${id}"><td class="id">${name}${error}</td>` +
    `<td class="s-${status}">${status}</td><td class="n">${fmt(record.declaredContext)}</td>` +
    `<td class="n">${limit(record, record.loadableContext)}</td>` +
    `<td class="n">${limit(record, record.workingContext)}</td><td>${bar}</td>` +
    `<td class="t">${when(record.testedAt)}</td></tr>`;
}

function modelSection(model: ReportModel, index: number): string {
  const { record, evidence } = model;
  const attempts = drawn(evidence);
  const id = escapeHtml(record.id);
  const name = record.displayName && record.displayName !== record.id
    ? ` <span class="note">${escapeHtml(record.displayName)}</span>`
    : "";
  const notes = [
    bracket(evidence.search, record.loadableContext, "loadable", record.cappedAt),
    bracket(evidence.search, record.workingContext, "working", record.cappedAt),
    evidence.checks.length > 0
      ? `${evidence.checks.length} attempts of one-size checks (ringed), drawn after the search`
      : "",
    evidence.earlier > 0 ? `${evidence.earlier} attempts of earlier searches not drawn` : "",
  ].filter((n) => n !== "");
  return `<article id="m${index}" data-model="${id}"><h3>${id}</h3>${name}` +
    `<p class="note">${statusOf(record)}; declared ${fmt(record.declaredContext)}, loadable ` +
    `${limit(record, record.loadableContext)}, working ${limit(record, record.workingContext)}; ` +
    `tested ` +
    `${when(record.testedAt)}</p>` +
    notes.map((n) => `<p class="note">${n}</p>`).join("") +
    probeChartSvg(record, attempts) + "</article>";
}

/** The legend of the probe charts' marks and lines. */
function legend(): string {
  const item = (mark: string, text: string) =>
    `<svg width="14" height="14">${mark}</svg> ${text}&emsp;`;
  return `<p class="legend note">` +
    item('<rect class="ok" x="3" y="3" width="8" height="8"/>', "loaded") +
    item('<rect class="fit" x="3" y="3" width="8" height="8"/>', "fitted down") +
    item('<rect class="no" x="3" y="3" width="8" height="8"/>', "refused") +
    item('<rect class="ck ok" x="3" y="3" width="8" height="8"/>', "check: started") +
    item('<circle class="ok" cx="7" cy="7" r="4"/>', "needle passed") +
    item('<circle class="no" cx="7" cy="7" r="4"/>', "needle failed") +
    item('<path class="ok" d="M7 3l4 4l-4 4l-4 -4z"/>', "2+2= sanity") +
    item('<circle class="ok one" cx="7" cy="7" r="4"/>', "one-size check") +
    item('<path class="lim w" d="M7 0v14"/>', "working") +
    item('<path class="lim l" d="M7 0v14"/>', "loadable") +
    item('<path class="lim d" d="M7 0v14"/>', "declared") +
    `</p><p class="note">One row per attempt, first at the top. A needle sits at its prompt's ` +
    `length (a dotted line to the size of the instance it ran on); a load at the size asked ` +
    `(a line to what LM Studio fitted it down to). Hover a mark for the attempt.</p>`;
}

/** The whole page. */
export function renderReport(input: ReportInput): string {
  const records = input.models.map((m) => m.record);
  const scale = shelfScale(records);
  const counts = new Map<string, number>();
  for (const r of records) counts.set(statusOf(r), (counts.get(statusOf(r)) ?? 0) + 1);
  const summary = [...counts].map(([status, n]) => `${n} ${status}`).join(", ");
  const charted = input.models.map((m) => drawn(m.evidence).length > 0);
  const rows = input.models.map((m, i) =>
    shelfRow(m.record, i, shelfBarSvg(m.record, scale), charted[i]!)
  );
  const sections = input.models.flatMap((m, i) => charted[i] ? [modelSection(m, i)] : []);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
    `<meta http-equiv="Content-Security-Policy" content="${CONTENT_SECURITY_POLICY}">` +
    `<meta name="viewport" content="width=device-width,initial-scale=1">` +
    `<title>LMStrix report</title><style>${STYLE}</style></head><body>` +
    `<h1>LMStrix: the real context limits of ${records.length} models</h1>` +
    `<p class="note">${summary || "no models: run lmstrix scan"}. Made ` +
    `${when(input.generatedAt.toISOString())} by LMStrix ${escapeHtml(input.version)}. ` +
    `<b>Loadable</b>: the largest context LM Studio loads at. <b>Working</b>: the largest at ` +
    `which the model still finds a needle in a prompt that fills it.</p>` +
    `<h2>The shelf</h2><p class="legend note">` +
    `<svg width="14" height="14"><rect class="d" x="0" y="5" width="14" height="4"/></svg> ` +
    `declared&emsp;<svg width="14" height="14"><rect class="l" x="0" y="1" width="14" ` +
    `height="12"/></svg> loadable&emsp;<svg width="14" height="14"><rect class="w" x="0" ` +
    `y="1" width="14" height="12"/></svg> working&emsp;on ` +
    `${scale.log ? "a logarithmic" : "a linear"} axis of context length</p>` +
    `<table><thead><tr><th>model</th><th>status</th><th>declared</th><th>loadable</th>` +
    `<th>working</th><th>${shelfAxisSvg(scale)}</th><th>tested</th></tr></thead>` +
    `<tbody>${rows.join("")}</tbody></table>` +
    (sections.length > 0
      ? `<h2>The evidence</h2>${legend()}${sections.join("")}`
      : `<p class="note">No attempts yet: run "lmstrix test --all".</p>`) +
    `</body></html>\n`;
}

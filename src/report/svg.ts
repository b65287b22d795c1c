/**
 * The report's pictures, as plain SVG strings: a shelf bar per model (declared, loadable and
 * working context on one axis shared by every row) and a model's probe chart (every load and
 * probe of its latest search and its one-size checks, one row each in the order they ran, at
 * their size on the x axis, with the limits as vertical lines).
 *
 * Plain SVG rather than a charting library inlined in the page: these are two chart types made
 * of rectangles, circles and lines; the page needs no script at all (its policy forbids them),
 * draws in any browser from disk and stays small (about 12 kB a tested model, where the smallest
 * charting libraries add 50 to 250 kB before the first chart). Each mark carries a `<title>`,
 * which browsers show as a tooltip: the attempt as the log holds it.
 *
 * @module
 */

import type { ModelRecord } from "../registry/model_record.ts";
import { escapeHtml, escapeShort } from "./escape.ts";
import type { DrawnAttempt } from "./evidence.ts";
import { contextScale, round1, type Scale } from "./scale.ts";

/** Width of a shelf bar, in pixels. */
export const SHELF_WIDTH = 360;
const SHELF_PAD = 10;

/** Width of a probe chart. */
export const CHART_WIDTH = 720;
const CHART_LEFT = 36;
const CHART_RIGHT = CHART_WIDTH - 16;
const CHART_TOP = 22;

/** Size at which the longest search still gets rows this tall; longer ones are squeezed. */
const ROW_HEIGHT = 9;
const MAX_ROWS_HEIGHT = 540;

const fmt = (n: number) => n.toLocaleString("en-US");

/** The shelf's axis: one scale for every model's bar, from all their numbers. */
export function shelfScale(records: readonly ModelRecord[]): Scale {
  const values = records.flatMap((r) => [r.declaredContext, r.loadableContext ?? 0]);
  return contextScale(values, SHELF_PAD, SHELF_WIDTH - SHELF_PAD, 4096);
}

/** The shelf's header row: the axis's tick labels. */
export function shelfAxisSvg(scale: Scale): string {
  const labels = scale.ticks.map((t) =>
    `<text x="${scale.x(t.value)}" y="12" text-anchor="middle">${t.label}</text>`
  );
  return `<svg class="axis" width="${SHELF_WIDTH}" height="16" role="img" ` +
    `aria-label="context length axis${scale.log ? ", logarithmic" : ""}">${labels.join("")}</svg>`;
}

/** One model's shelf bar: declared (thin, grey), loadable (blue), working (green). */
export function shelfBarSvg(record: ModelRecord, scale: Scale): string {
  const left = scale.x(0);
  const grid = scale.ticks.map((t) => `<path d="M${scale.x(t.value)} 0v18"/>`).join("");
  const bar = (value: number | null, cls: string, y: number, h: number, what: string) =>
    value === null || value <= 0
      ? ""
      : `<rect class="${cls}" x="${left}" y="${y}" width="${
        round1(Math.max(1, scale.x(value) - left))
      }" height="${h}"><title>${what} ${fmt(value)}</title></rect>`;
  return `<svg class="bar" width="${SHELF_WIDTH}" height="18" role="img" aria-label="` +
    `declared ${fmt(record.declaredContext)}, loadable ${record.loadableContext ?? "unknown"}, ` +
    `working ${record.workingContext ?? "unknown"}"><g class="grid">${grid}</g>` +
    bar(record.declaredContext, "d", 7, 4, "declared") +
    bar(record.loadableContext, "l", 3, 12, "loadable") +
    bar(record.workingContext, "w", 3, 12, "working") + "</svg>";
}

/** Where an attempt sits on the x axis: a needle at its prompt length, the rest at the load. */
function sizeOf(a: DrawnAttempt): number {
  return a.action === "needle" ? a.promptTokens ?? a.askedContext : a.askedContext;
}

/** The class of an attempt's mark: its outcome, as the legend names it. */
function markClass(a: DrawnAttempt): string {
  switch (a.outcome) {
    case "loaded":
    case "pass":
      return "ok";
    case "started":
      return "st";
    case "fitted":
      return "fit";
    case "crashed":
      return "cr";
    default:
      return "no";
  }
}

/** What an attempt was, for its tooltip. */
function attemptTitle(a: DrawnAttempt, index: number): string {
  const what = a.action === "needle"
    ? `needle ${fmt(a.promptTokens ?? 0)} tokens in ctx ${fmt(a.askedContext)}`
    : a.action === "sanity"
    ? `sanity 2+2= in ctx ${fmt(a.askedContext)}`
    : `${a.action} ctx ${fmt(a.askedContext)}`;
  const actual = a.outcome === "fitted" && a.actualContext !== null
    ? ` to ${fmt(a.actualContext)}`
    : "";
  const said = a.output ? `; ${a.output}` : a.error ? `; ${a.error}` : "";
  const check = a.check !== undefined ? `check at ${fmt(a.check)}: ` : "";
  return `#${index + 1} ${check}${what}: ${a.outcome}${actual}${escapeShort(said, 100)}`;
}

/** One attempt's mark at row `y`: a square for a load or check, a circle for a probe. */
function markSvg(a: DrawnAttempt, index: number, scale: Scale, y: number, r: number): string {
  const x = scale.x(sizeOf(a));
  const cls = markClass(a) + (a.check !== undefined ? " one" : "");
  const title = `<title>${attemptTitle(a, index)}</title>`;
  if (a.action === "load" || a.action === "check") {
    const hollow = a.action === "check" ? " ck" : "";
    // A fitted load: a line from the asked size back to what LM Studio gave.
    const fit = a.outcome === "fitted" && a.actualContext !== null
      ? `<path class="fitline" d="M${x} ${y}H${scale.x(a.actualContext)}"/>`
      : "";
    return `${fit}<rect class="${cls}${hollow}" x="${round1(x - r)}" y="${round1(y - r)}" ` +
      `width="${2 * r}" height="${2 * r}">${title}</rect>`;
  }
  if (a.action === "sanity") {
    return `<path class="${cls}" d="M${x} ${round1(y - r)}l${r} ${r}l-${r} ${r}l-${r} -${r}z">` +
      `${title}</path>`;
  }
  // A needle on a larger instance: a faint line to the instance's size.
  const instance = a.askedContext > sizeOf(a)
    ? `<path class="inst" d="M${x} ${y}H${scale.x(a.askedContext)}"/>`
    : "";
  return `${instance}<circle class="${cls}" cx="${x}" cy="${y}" r="${r}">${title}</circle>`;
}

/**
 * A model's probe chart: each attempt of `attempts` (its latest search, then its one-size
 * checks) as one row from top to bottom, at its size; the declared, loadable and working
 * context as vertical lines.
 */
export function probeChartSvg(record: ModelRecord, attempts: readonly DrawnAttempt[]): string {
  const values = [
    record.declaredContext,
    ...attempts.flatMap((a) => [sizeOf(a), a.askedContext]),
  ];
  const scale = contextScale(values, CHART_LEFT, CHART_RIGHT);
  const rowHeight = Math.min(ROW_HEIGHT, MAX_ROWS_HEIGHT / Math.max(1, attempts.length));
  const r = round1(Math.max(1.5, Math.min(3.5, rowHeight / 2 - 0.5)));
  const bottom = CHART_TOP + rowHeight * Math.max(1, attempts.length) + 6;
  const height = Math.ceil(bottom + 36);
  const parts: string[] = [];
  for (const t of scale.ticks) {
    const x = scale.x(t.value);
    parts.push(
      `<path class="gl" d="M${x} ${CHART_TOP - 6}V${bottom}"/>` +
        `<text x="${x}" y="12" text-anchor="middle">${t.label}</text>`,
    );
  }
  const limit = (value: number | null, cls: string, label: string, row: number) => {
    if (value === null || value <= 0) return;
    const x = scale.x(value);
    const anchor = x > CHART_WIDTH - 120 ? "end" : "start";
    const dx = anchor === "end" ? -3 : 3;
    parts.push(
      `<path class="lim ${cls}" d="M${x} ${CHART_TOP - 6}V${bottom + row * 11}"/>` +
        `<text class="${cls}" x="${round1(x + dx)}" y="${bottom + row * 11 + 8}" ` +
        `text-anchor="${anchor}">${label} ${fmt(value)}</text>`,
    );
  };
  limit(record.declaredContext, "d", "declared", 0);
  limit(record.loadableContext, "l", "loadable", 1);
  limit(record.workingContext, "w", "working", 2);
  attempts.forEach((a, i) => {
    const y = round1(CHART_TOP + rowHeight * i + rowHeight / 2);
    parts.push(markSvg(a, i, scale, y, r));
  });
  const label = `${escapeHtml(record.id)}: ${attempts.length} attempts on a ` +
    `${scale.log ? "logarithmic" : "linear"} context axis`;
  return `<svg class="chart" width="${CHART_WIDTH}" height="${height}" ` +
    `viewBox="0 0 ${CHART_WIDTH} ${height}" role="img" aria-label="${label}">` +
    `<text x="2" y="${CHART_TOP + 4}" class="rl">1st</text>` +
    parts.join("") + "</svg>";
}

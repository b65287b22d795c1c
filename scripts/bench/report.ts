/**
 * The bench's figures as data ({@link BenchReport}, saved as `docs/bench.json`), the issue's
 * targets judged on them ({@link verdicts}), and the Markdown written from them: the full tables
 * of `docs/bench.md` and the short summary of the README, each between its markers. The bench
 * computes the figures and calls these; a test renders the saved figures again and fails where the
 * README or `docs/bench.md` says something else, without running the bench.
 *
 * @module
 */

import { markdownTable } from "markdown-table";

/** Sums over the fleet of one algorithm's runs on the emulator. */
export interface FleetRuns {
  /** Load requests, checks included. */
  loads: number;
  /** Virtual ms. */
  ms: number;
  /** Numbers reported right (two per model). */
  right: number;
}

/** Averages over a prior of truths (sums over the fleet, virtual ms). */
export interface PriorAverages {
  /** Our search, played out on the sampled truths. */
  ours: number;
  /** The best any search can reach on the same truths. */
  best: number;
  /** The oracle lower bound. */
  lb: number;
  /** The plain correct bisection, played out on the same truths. */
  plain: number;
  /** Truths played, and those ours got wrong. */
  runs: number;
  wrong: number;
  /** Loads ours asked for whose outcome its earlier answers implied. */
  implied: number;
}

/** One regime's figures. */
export interface RegimeReport {
  key: string;
  name: string;
  /** Per model, the cells of the full table. */
  rows: string[][];
  numbers: number;
  ours: FleetRuns & { checks: number };
  ref: FleetRuns;
  plain: FleetRuns;
  lb: { loads: number; ms: number };
  /** Per prior (its key in {@link PRIORS}), the averages. */
  averages: Record<string, PriorAverages>;
  /** Largest relative difference of the pricing probe from the emulator on the fleet's truths. */
  drift: number;
  /** Loads ours asked for on the fleet whose outcome was implied. */
  implied: number;
  /**
   * What a search not told the prior can reach at best (`prior_floor.ts`): no search's worse
   * ratio to the best, uniform or shelf, is below `floor`; the best averages it is taken against
   * (exact, over every truth of each prior, ms); `phased`, the same for a search that finds the
   * loadable size before its first needle.
   */
  floor: {
    floor: number;
    lambda: number;
    phased: number;
    bestUniformMs: number;
    bestShelfMs: number;
  };
  /**
   * Per prior, our time over the best's on shelves of the fleet tested in turn
   * (`shelf_runs.ts`): learning the shelf's share of models that work at their limit, and with
   * the default share, on the same truths; `lastShare`, the share the last model of a shelf
   * was given, averaged over the shelves.
   */
  shelves?: Record<string, { learned: number; fixed: number; runs: number; lastShare?: number }>;
}

/** What `deno task bench` measured. */
export interface BenchReport {
  /** Regimes, in order. */
  regimes: RegimeReport[];
  /** Truths sampled per model and prior. */
  sample: number;
}

/** Where the bench writes its figures, full tables and summary (from the repository's root). */
export const BENCH_JSON = "docs/bench.json";
export const BENCH_DOC = "docs/bench.md";
export const README = "README.md";

/** The priors the averages are taken over: key and what it is. */
export const PRIORS = [
  { key: "uniform", name: "L uniform, W uniform up to L" },
  { key: "shelf", name: "as uniform, but W = L in one case in two" },
] as const;

/** Time against the plain bisection the issue asks for, per regime (b leaves less to save). */
export const PLAIN_TARGET: Record<string, number> = { a: 0.5, b: 0.75, c: 0.5, d: 0.5 };

/** Largest ratio of our average to the best's, under every prior. */
export const BEST_TARGET = 1.1;

/** One target, judged. */
export interface Verdict {
  regime: string;
  target: string;
  value: string;
  met: boolean;
}

const x = (ratio: number) => `${ratio.toFixed(2)}x`;
const min = (ms: number) => (ms / 60_000).toFixed(2);

/** Each target of the issue on each regime, with its measured value and whether it is met. */
export function verdicts(report: BenchReport): Verdict[] {
  const out: Verdict[] = [];
  for (const r of report.regimes) {
    out.push({
      regime: r.key,
      target: "every number right (fleet)",
      value: `${r.ours.right}/${r.numbers}`,
      met: r.ours.right === r.numbers,
    });
    const plain = r.ours.ms / r.plain.ms;
    const limit = PLAIN_TARGET[r.key] ?? 0.5;
    out.push({
      regime: r.key,
      target: `time <= ${limit}x the plain bisection's (fleet)`,
      value: x(plain),
      met: plain <= limit,
    });
    for (const prior of PRIORS) {
      const a = r.averages[prior.key];
      if (a === undefined) continue;
      const ratio = a.ours / a.best;
      out.push({
        regime: r.key,
        target: `average <= ${BEST_TARGET}x the best's (${prior.key} prior)`,
        value: x(ratio),
        met: ratio <= BEST_TARGET && a.wrong === 0,
      });
    }
    const implied = Object.values(r.averages).reduce((sum, a) => sum + a.implied, r.implied);
    out.push({
      regime: r.key,
      target: "no load whose outcome was implied (fleet and priors)",
      value: `${implied}`,
      met: implied === 0,
    });
  }
  return out;
}

/** A Markdown table: the first `left` columns (names) left-aligned, the figures right-aligned. */
function table(head: string[], body: string[][], left = 1): string {
  return markdownTable([head, ...body], {
    align: head.map((_, i) => (i < left ? "l" : "r")),
  });
}

/** The README's summary: one row per regime, within 100 columns. */
export function summaryTable(report: BenchReport): string {
  const all = verdicts(report);
  const rows = report.regimes.map((r) => {
    const mine = all.filter((v) => v.regime === r.key);
    const met = mine.filter((v) => v.met).length;
    const ratios = PRIORS.map((p) => {
      const a = r.averages[p.key];
      return a === undefined ? "-" : x(a.ours / a.best);
    });
    return [
      `${r.key}: ${shortName(r.key)}`,
      `${r.ours.right}/${r.numbers}`,
      `${min(r.ours.ms)} / ${min(r.plain.ms)}`,
      x(r.ours.ms / r.plain.ms),
      ratios.join(" / "),
      `${met}/${mine.length}`,
    ];
  });
  return table([
    "regime",
    "right",
    "min: ours / plain",
    "vs plain",
    "avg vs best: uniform / shelf",
    "met",
  ], rows);
}

/** Short regime names for the summary. */
function shortName(key: string): string {
  return {
    a: "guardrail + cache",
    b: "engine + no cache",
    c: "mixed shelf",
    d: "slow long prompts",
  }[key] ?? key;
}

/** The full tables of `docs/bench.md`: targets, averages, and each regime model by model. */
export function fullTables(report: BenchReport): string {
  const parts: string[] = [];
  parts.push(
    table(
      ["regime", "target", "measured", "verdict"],
      verdicts(report).map((v) => [v.regime, v.target, v.value, v.met ? "met" : "NOT met"]),
      2,
    ),
  );
  parts.push(
    "Fleet totals (15 LLMs of the demo fleet; loads count checks; virtual minutes):",
    table(
      [
        "regime",
        "right: ours / ref / plain",
        "loads: ours / ref / plain / LB",
        "min: ours / ref / plain / LB",
      ],
      report.regimes.map((r) => [
        `${r.key}: ${r.name}`,
        `${r.ours.right} / ${r.ref.right} / ${r.plain.right} of ${r.numbers}`,
        `${r.ours.loads} / ${r.ref.loads} / ${r.plain.loads} / ${r.lb.loads}`,
        `${min(r.ours.ms)} / ${min(r.ref.ms)} / ${min(r.plain.ms)} / ${min(r.lb.ms)}`,
      ]),
    ),
  );
  for (const prior of PRIORS) {
    const rows = report.regimes.flatMap((r) => {
      const a = r.averages[prior.key];
      if (a === undefined) return [];
      return [[
        `${r.key}: ${r.name}`,
        min(a.best),
        min(a.lb),
        min(a.plain),
        min(a.ours),
        x(a.ours / a.best),
        x(a.ours / a.plain),
        `${a.wrong}/${a.runs}`,
      ]];
    });
    if (rows.length === 0) continue;
    parts.push(
      `Averages over the ${prior.key} prior (${prior.name}; ${report.sample} truths per model, ` +
        "sums over the fleet, minutes):",
      table(
        ["regime", "best", "LB", "plain", "ours", "ours vs best", "ours vs plain", "ours wrong"],
        rows,
      ),
    );
  }
  parts.push(
    "A search is not told the prior: the least worse-of-both ratio any one search can reach, " +
      "with the best's two games played apart, and for a search that loads before its first " +
      "needle (`scripts/bench/prior_floor.ts`; best: exact averages over every truth, " +
      "minutes; `joint_floor.ts` raises b's first bound, see below):",
    table(
      [
        "regime",
        "best: uniform / shelf",
        "no search below (games apart)",
        "no phased search below",
        "ours: uniform / shelf",
      ],
      report.regimes.map((r) => {
        const ours = PRIORS.map((p) => {
          const a = r.averages[p.key];
          return a === undefined ? "-" : x(a.ours / a.best);
        });
        return [
          `${r.key}: ${r.name}`,
          `${min(r.floor.bestUniformMs)} / ${min(r.floor.bestShelfMs)}`,
          `${r.floor.floor.toFixed(3)}x`,
          `${r.floor.phased.toFixed(3)}x`,
          ours.join(" / "),
        ];
      }),
    ),
  );
  parts.push(
    "A run learns its shelf: our time over the best's on shelves of the fleet, one truth per " +
      "model drawn from the prior, tested in turn, each search given the share of the models " +
      "before it that work at their limit, and with the default share instead " +
      "(`scripts/bench/shelf_runs.ts`):",
    table(
      [
        "regime",
        "learned: uniform / shelf",
        "default: uniform / shelf",
        "last share learned",
        "searches",
      ],
      report.regimes.map((r) => {
        const cells = (pick: (runs: { learned: number; fixed: number }) => string) =>
          PRIORS.map((p) => {
            const runs = r.shelves?.[p.key];
            return runs === undefined ? "-" : pick(runs);
          }).join(" / ");
        const runs = PRIORS.reduce((sum, p) => sum + (r.shelves?.[p.key]?.runs ?? 0), 0);
        return [
          `${r.key}: ${r.name}`,
          cells((runs) => x(runs.learned)),
          cells((runs) => x(runs.fixed)),
          PRIORS.map((p) => r.shelves?.[p.key]?.lastShare?.toFixed(2) ?? "-").join(" / "),
          `${runs}`,
        ];
      }),
    ),
  );
  for (const r of report.regimes) {
    parts.push(
      `Regime ${r.key}, ${r.name}, model by model (error = reported - truth in tokens, ✗ outside ` +
        "[truth - precision, truth + 64]; avg: over the uniform prior):",
      table(MODEL_HEAD, r.rows),
    );
  }
  return parts.join("\n\n");
}

/** Columns of the per-model table. */
export const MODEL_HEAD = [
  "model",
  "truth L / W",
  "loads",
  "checks",
  "min",
  "error L / W",
  "plain loads",
  "plain min",
  "ref min",
  "ref error L / W",
  "LB min",
  "avg min: ours / best / plain",
];

/** Replaces what lies between `<!-- name:start -->` and `<!-- name:end -->` in `text`. */
export function replaceBlock(text: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`No ${start} ... ${end} block`);
  return `${text.slice(0, from + start.length)}\n\n${body}\n\n${text.slice(to)}`;
}

/** What lies between the markers of block `name` in `text`, trimmed; null without them. */
export function readBlock(text: string, name: string): string | null {
  const start = `<!-- ${name}:start -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(`<!-- ${name}:end -->`);
  if (from < 0 || to < from) return null;
  return text.slice(from + start.length, to).trim();
}

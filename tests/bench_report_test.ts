/**
 * The bench's tables in the README and in `docs/bench.md` are the ones its generator writes from
 * the figures it saved (`docs/bench.json`): rendered again here and compared, without running the
 * bench. And the verdicts say "NOT met" where a figure misses its target.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BENCH_DOC,
  BENCH_JSON,
  type BenchReport,
  fullTables,
  readBlock,
  README,
  type RegimeReport,
  replaceBlock,
  summaryTable,
  verdicts,
} from "../scripts/bench/report.ts";

const root = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, root));

/** The text with table padding (as `deno fmt` aligns it) and blank lines taken out. */
function normalise(text: string): string {
  return text.split("\n").map((line) => line.trim()).filter((line) => line !== "").map((line) =>
    /^\|[\s:|-]+\|$/.test(line) ? "|---|" : line.replace(/\s+/g, " ")
  ).join("\n");
}

Deno.test("the README's bench summary is the one written from the saved figures", async () => {
  const report = JSON.parse(await read(BENCH_JSON)) as BenchReport;
  const block = readBlock(await read(README), "bench-summary");
  assert.ok(block !== null, "the README has no bench-summary block");
  assert.equal(normalise(block), normalise(summaryTable(report)));
  for (const line of block.split("\n")) assert.ok(line.length <= 100, `over 100 columns: ${line}`);
});

Deno.test("docs/bench.md's tables are the ones written from the saved figures", async () => {
  const report = JSON.parse(await read(BENCH_JSON)) as BenchReport;
  const block = readBlock(await read(BENCH_DOC), "bench-tables");
  assert.ok(block !== null, "docs/bench.md has no bench-tables block");
  assert.equal(normalise(block), normalise(fullTables(report)));
  assert.equal(report.regimes.map((r) => r.key).join(""), "abcd");
});

Deno.test("each target is judged on its figure: a miss says NOT met", () => {
  const regime = (key: string, oursMs: number, best: number): RegimeReport => ({
    key,
    name: key,
    rows: [],
    numbers: 2,
    ours: { loads: 2, checks: 0, ms: oursMs, right: 2 },
    ref: { loads: 4, ms: 100, right: 1 },
    plain: { loads: 4, ms: 100, right: 2 },
    lb: { loads: 2, ms: 10 },
    averages: {
      uniform: { ours: 110, best, lb: 50, plain: 300, runs: 10, wrong: 0, implied: 0 },
    },
    drift: 0,
    implied: 0,
    floor: { floor: 1.05, lambda: 0.5, phased: 1.08, bestUniformMs: 90, bestShelfMs: 80 },
    shelves: {
      uniform: { learned: 1.04, fixed: 1.07, runs: 30, lastShare: 0.12 },
      shelf: { learned: 1.06, fixed: 1.09, runs: 30, lastShare: 0.47 },
    },
  });
  const report: BenchReport = { regimes: [regime("a", 50, 100), regime("b", 80, 90)], sample: 10 };
  const judged = verdicts(report);
  const find = (key: string, start: string) =>
    judged.find((v) => v.regime === key && v.target.startsWith(start));
  assert.equal(find("a", "time")?.met, true);
  assert.equal(find("a", "average")?.met, true);
  // b: 0.8x the plain bisection is above its 0.75x, 110 / 90 above 1.1x the best.
  assert.equal(find("b", "time")?.met, false);
  assert.equal(find("b", "time")?.value, "0.80x");
  assert.equal(find("b", "average")?.met, false);
  assert.match(summaryTable(report), /\|\s*b: engine \+ no cache\s*\|\s*2\/2\s*\|.*\|\s*2\/4\s*\|/);
  assert.match(fullTables(report), /NOT met/);
  // Shelves tested in turn, learning the share and with the default.
  assert.match(
    fullTables(report),
    /\|\s*b: b\s*\|\s*1\.04x \/ 1\.06x\s*\|\s*1\.07x \/ 1\.09x\s*\|\s*0\.12 \/ 0\.47\s*\|\s*60\s*\|/,
  );
  // The floor a search not told the prior cannot beat, beside ours.
  assert.match(
    fullTables(report),
    /\|\s*b: b\s*\|\s*0\.00 \/ 0\.00\s*\|\s*1\.050x\s*\|\s*1\.080x\s*\|\s*1\.22x \/ -\s*\|/,
  );
});

Deno.test("a generated block replaces only what lies between its markers", () => {
  const text = "before\n<!-- x:start -->\nold\n<!-- x:end -->\nafter\n";
  const next = replaceBlock(text, "x", "new");
  assert.equal(next, "before\n<!-- x:start -->\n\nnew\n\n<!-- x:end -->\nafter\n");
  assert.equal(readBlock(next, "x"), "new");
  assert.throws(() => replaceBlock("no markers", "x", "new"), /No <!-- x:start -->/);
});

/**
 * LMStrix against a real engine: `deno task engine` (llama.cpp behind LM Studio's protocol)
 * serving the committed fixture models, with the guardrail on and off. The numbers LMStrix finds
 * are checked against the truth measured through the engine directly
 * (`tests/fixtures/engine_truth.json`, written by `deno task engine:sweep`), not against numbers
 * typed here.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { TestResult } from "../src/engine/test_events.ts";
import { runCliAgainst, tempHome } from "./support/cli.ts";
import { startEngineProcess } from "./support/engine.ts";
import { classifyFailure } from "../src/lmstudio/failures.ts";
import { curveDocs } from "../scripts/engine/truth_table.ts";

interface Limits {
  loads: number | null;
  fails: number | null;
}

interface Truth {
  budget: number;
  models: Record<string, {
    declaredContext: number;
    trainedContext: number | null;
    loadable: { on: Limits; off: Limits };
    curve: Array<{ context: number; rate: number; probes: number }>;
  }>;
}

const TRUTH: Truth = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/engine_truth.json", import.meta.url)),
);

/** The search's precision in these runs: llama.cpp's own step between context sizes. */
const PRECISION = 256;
/** The smallest context tried: the needle prompt needs about 360 of these models' tokens. */
const MIN_CONTEXT = 512;

/** The measured pass rate at `context`, read off the curve between its two nearest rungs. */
function rateAt(curve: Truth["models"][string]["curve"], context: number): number {
  const below = curve.filter((p) => p.context <= context).at(-1);
  const above = curve.find((p) => p.context >= context);
  if (below === undefined) return above?.rate ?? 0;
  if (above === undefined || above.context === below.context) return below.rate;
  const t = (context - below.context) / (above.context - below.context);
  return below.rate + t * (above.rate - below.rate);
}

/** One model's outcome in `test --json`. */
type Result = TestResult;

/** A load as the engine recorded it (its `/__engine/stats`). */
interface EngineLoad {
  modelKey: string;
  askedContext: number;
  ok: boolean;
  stage: string;
}

/**
 * Runs `scan` and `test --all` against the engine with `guardrail`: the results, every line of
 * the attempt logs, and every load the engine itself recorded during the run.
 */
async function testAll(
  guardrail: "on" | "off",
): Promise<{ results: Result[]; log: string[]; loads: EngineLoad[] }> {
  await using engine = await startEngineProcess([
    "--guardrail",
    guardrail,
    "--memory-budget",
    String(TRUTH.budget),
  ]);
  await using home = await tempHome();
  const scan = await runCliAgainst(engine.url, home.path, ["scan", "--json"]);
  assert.equal(scan.code, 0, scan.stderr);
  const scanned = JSON.parse(scan.stdout).models as Array<{ id: string; declaredContext: number }>;
  for (const [id, truth] of Object.entries(TRUTH.models)) {
    assert.equal(scanned.find((m) => m.id === id)?.declaredContext, truth.declaredContext, id);
  }
  const run = await runCliAgainst(engine.url, home.path, [
    "test",
    "--all",
    "--json",
    "--min-context",
    String(MIN_CONTEXT),
    "--precision",
    String(PRECISION),
  ]);
  const document = JSON.parse(run.stdout);
  assert.equal(document.stopped ?? null, null, run.stderr);
  const log: string[] = [];
  for await (const entry of Deno.readDir(`${home.path}/lmstrix/context_tests`)) {
    log.push(
      ...(await Deno.readTextFile(`${home.path}/lmstrix/context_tests/${entry.name}`))
        .trim().split("\n"),
    );
  }
  const stats = await (await fetch(`${engine.httpUrl}/__engine/stats`)).json();
  return { results: document.results, log, loads: stats.loads };
}

/** The guardrail's estimate does not move: LMStrix's number is within a step of the sweep's. */
function checkEstimatedLoadable(result: Result, limits: Limits): void {
  assert.notEqual(limits.loads, null);
  const loads = limits.loads!;
  const fails = limits.fails === null ? loads + 1 : limits.fails;
  assert.ok(result.loadableContext !== null, `${result.id}: nothing loaded`);
  // LMStrix reports a size that loaded, within one precision step of the first that did not.
  assert.ok(
    result.loadableContext! < fails && result.loadableContext! >= loads - PRECISION,
    `${result.id}: loadable ${result.loadableContext}, the engine loads ${loads}, not ${fails}`,
  );
}

/**
 * How far a real allocation boundary may lie from the sweep's on another machine, as a share
 * of it. It moves within a run (the worker's heap grows as it runs: a size that loaded may fail
 * a minute later; measured here, 48,896 to 58,624 after a dozen direct loads) and from machine
 * to machine (a CI machine's run loaded 55,552 where this one's sweep loads 58,368). So with the
 * guardrail off the number is judged by what the engine did in the same run, and only bounded
 * by the fixture.
 */
const REAL_BOUNDARY_SPREAD = 0.25;

/**
 * Llama.cpp's real allocation failure: the engine loaded LMStrix's number in that run and
 * failed a load within one precision step above it (unless the number is the declared size).
 */
function checkRealLoadable(
  result: Result,
  loads: EngineLoad[],
  limits: Limits,
  declared: number,
): void {
  const loadable = result.loadableContext;
  assert.ok(loadable !== null, `${result.id}: nothing loaded`);
  const mine = loads.filter((l) => l.modelKey === result.id);
  assert.ok(
    mine.some((l) => l.ok && l.askedContext === loadable),
    `${result.id}: loadable ${loadable}, which the engine never loaded`,
  );
  if (loadable < declared) {
    const above = mine.filter((l) =>
      !l.ok && l.stage === "engine" && l.askedContext > loadable &&
      l.askedContext <= loadable + PRECISION
    );
    assert.ok(
      above.length > 0,
      `${result.id}: loadable ${loadable}, yet llama.cpp failed nothing up to ${
        loadable + PRECISION
      }: ${JSON.stringify(mine.map((l) => [l.askedContext, l.ok]))}`,
    );
  }
  const swept = limits.loads!;
  assert.ok(
    Math.abs(loadable - swept) <= swept * REAL_BOUNDARY_SPREAD,
    `${result.id}: loadable ${loadable}, far from the ${swept} the sweep measured`,
  );
}

function checkModels(results: Result[], guardrail: "on" | "off", loads: EngineLoad[]): void {
  for (const [id, truth] of Object.entries(TRUTH.models)) {
    const result = results.find((r) => r.id === id);
    assert.ok(result, `no result for ${id}`);
    if (guardrail === "on") checkEstimatedLoadable(result, truth.loadable.on);
    else checkRealLoadable(result, loads, truth.loadable.off, truth.declaredContext);
    const limit = result.loadableContext ?? 0;
    if (!truth.curve.some((p) => p.context >= MIN_CONTEXT && p.context <= limit && p.rate >= 0.8)) {
      // The engine never answers at 80 % (random weights): failed, and saying why.
      assert.equal(result.status, "failed");
      assert.equal(result.workingContext, null);
      assert.match(result.error ?? "", /answer|needle|2\+2|sanity/i);
      continue;
    }
    assert.equal(result.status, "tested", `${id}: ${result.error}`);
    const working = result.workingContext!;
    const rate = rateAt(truth.curve, working);
    assert.ok(rate >= 0.8, `${id}: working ${working}, where the engine passes ${rate}`);
    const above = working + PRECISION;
    const loadable = result.loadableContext!;
    assert.ok(
      above > loadable || rateAt(truth.curve, above) < 0.5,
      `${id}: working ${working}, yet the engine passes ${rateAt(truth.curve, above)} at ${above}`,
    );
  }
}

Deno.test("against the real engine with its guardrail on, lmstrix finds the loadable and working contexts the engine measures", async () => {
  const { results, log, loads } = await testAll("on");
  checkModels(results, "on", loads);
  // The guardrail's refusals are LM Studio's text, read as refusals.
  const refusals = log.map((line) => JSON.parse(line)).filter((a) =>
    /insufficient system resources/.test(String(a.output ?? ""))
  );
  assert.ok(refusals.length > 0, "no guardrail refusal in the attempt log");
  for (const attempt of refusals) {
    assert.equal(attempt.outcome, "refused");
    assert.equal(classifyFailure(new Error(attempt.output)), "refused");
  }
});

Deno.test("against the real engine with its guardrail off, llama.cpp's allocation failures are read as refusals and the numbers still hold", async () => {
  const { results, log, loads } = await testAll("off");
  checkModels(results, "off", loads);
  const failures = log.map((line) => JSON.parse(line)).filter((a) =>
    /failed to allocate|insufficient memory/.test(String(a.output ?? ""))
  );
  assert.ok(failures.length > 0, "no real allocation failure in the attempt log");
  for (const attempt of failures) {
    assert.equal(attempt.outcome, "refused");
    assert.equal(classifyFailure(new Error(attempt.output)), "refused");
  }
});

Deno.test("the README and docs/engine.md show the curve the engine sweep measured", async () => {
  for (const { path, text } of await curveDocs(new URL("../", import.meta.url))) {
    assert.equal(
      await Deno.readTextFile(path),
      text,
      `${path.pathname} differs: run deno task engine:sweep --write (or truth_table.ts --write)`,
    );
    assert.match(text, /^\| needle-512: context \|/m, `${path.pathname} has no curve table`);
  }
});

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

interface Result {
  id: string;
  declaredContext: number;
  loadableContext: number | null;
  workingContext: number | null;
  status: string;
  error: string | null;
}

async function testAll(guardrail: "on" | "off"): Promise<{ results: Result[]; log: string[] }> {
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
  return { results: document.results, log };
}

/**
 * How far a real allocation boundary moves between runs, as a share of it: the address space a
 * context may take is capped to the byte, but the rest of the process (V8, the threads) moves
 * it by a megabyte or two, about 1,000 tokens of these tiny models (measured: 57,088 to 58,112
 * tokens in runs of `test --all`, 55,808 to 57,600 in sweeps). The guardrail's estimate does not
 * move.
 */
const REAL_BOUNDARY_SPREAD = { on: 0, off: 0.04 };

function checkLoadable(result: Result, limits: Limits, guardrail: "on" | "off"): void {
  assert.notEqual(limits.loads, null);
  const loads = limits.loads!;
  const slack = Math.round(loads * REAL_BOUNDARY_SPREAD[guardrail]);
  const fails = limits.fails === null ? loads + 1 : limits.fails + slack;
  assert.ok(result.loadableContext !== null, `${result.id}: nothing loaded`);
  // LMStrix reports a size that loaded, within one precision step of the first that did not.
  assert.ok(
    result.loadableContext! < fails && result.loadableContext! >= loads - PRECISION - slack,
    `${result.id}: loadable ${result.loadableContext}, the engine loads ${loads}, not ${fails}`,
  );
}

function checkModels(results: Result[], guardrail: "on" | "off"): void {
  for (const [id, truth] of Object.entries(TRUTH.models)) {
    const result = results.find((r) => r.id === id);
    assert.ok(result, `no result for ${id}`);
    checkLoadable(result, truth.loadable[guardrail], guardrail);
    const loads = truth.loadable[guardrail].loads ?? 0;
    if (!truth.curve.some((p) => p.context >= MIN_CONTEXT && p.context <= loads && p.rate >= 0.8)) {
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
  const { results, log } = await testAll("on");
  checkModels(results, "on");
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
  const { results, log } = await testAll("off");
  checkModels(results, "off");
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

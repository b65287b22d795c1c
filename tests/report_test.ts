/**
 * `lmstrix report`: the page from a real test run of the demo fleet (through the CLI against the
 * emulator), opened in headless Chromium from disk: every model appears, the page makes no
 * network request, and a screenshot is taken (set `LMSTRIX_UPDATE_SCREENSHOT=1` to write it to
 * docs/report.png for the README). Also the CLI's path, `--json` and errors, escaping of what
 * the server sent, the size bound for fifty models, and the pure parts (evidence, scale).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { LMStrix } from "../mod.ts";
import { reportPath } from "../src/cli/report.ts";
import { lmstrixPaths } from "../src/paths.ts";
import { evidenceOf } from "../src/report/evidence.ts";
import { renderReport } from "../src/report/html.ts";
import { buildReport } from "../src/report/report.ts";
import { contextScale } from "../src/report/scale.ts";
import { startChromium } from "./support/chromium.ts";
import { closedPort, runCli } from "./support/cli.ts";
import { loadAttempt, record } from "./support/records.ts";
import { CHECKED, HOSTILE_KEY, shelfOf, testedDemoHome } from "./support/report_home.ts";

const MB = 1024 * 1024;

/** Every model id in the page's shelf and in its evidence sections, as the browser reads them. */
const MODELS_IN_PAGE = `JSON.stringify({
  shelf: [...document.querySelectorAll("tr[data-model]")].map((e) => e.dataset.model),
  shown: [...document.querySelectorAll("tr[data-model] td.id")].map((e) => e.firstChild.textContent),
  charts: [...document.querySelectorAll("article[data-model]")].map((e) => e.dataset.model),
  marks: document.querySelectorAll("article svg title").length,
  images: document.images.length,
  scripts: document.scripts.length,
})`;

interface PageModels {
  shelf: string[];
  shown: string[];
  charts: string[];
  marks: number;
  images: number;
  scripts: number;
}

Deno.test("lmstrix report writes a page a real browser opens from disk, every model in it, no request made", async (t) => {
  await using home = await testedDemoHome();
  const out = await Deno.makeTempDir({ prefix: "lmstrix-report-" });
  try {
    const file = join(out, "fleet.html");

    await t.step("report --out writes the file and prints its path on stdout", async () => {
      const run = await runCli(["report", "--out", file], { home: home.path });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, `${file}\n`);
      assert.match(run.stderr, /Wrote the report of 17 models \(16 with their probes\), \d+ kB/);
      const quiet = await runCli(["report", "--out", file, "-q", "--json"], { home: home.path });
      assert.equal(quiet.code, 0, quiet.stderr);
      assert.deepEqual(JSON.parse(quiet.stdout), { report: file });
      assert.equal(quiet.stderr, "", "--quiet keeps only the result");
    });

    const html = await Deno.readTextFile(file);

    await t.step("what the server sent is text, never markup", () => {
      assert.equal(html.match(/<script/gi), null, "no script element at all");
      assert.equal(html.match(/<img/gi), null, "no image element");
      assert.ok(html.includes("evil/&lt;img src=&quot;http://127.0.0.1:9/x.png&quot;"));
      assert.ok(html.includes("&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;"));
    });

    await t.step("headless Chromium shows every model and makes no network request", async () => {
      await using browser = await startChromium();
      const requests = await browser.open(`file://${file}`);
      const page = JSON.parse(await browser.evaluate<string>(MODELS_IN_PAGE)) as PageModels;
      assert.deepEqual([...page.shelf].sort(), [...home.ids].sort(), "one shelf row per model");
      assert.deepEqual([...page.shown].sort(), [...home.ids].sort(), "ids shown as text");
      assert.ok(page.shelf.includes(HOSTILE_KEY), "the markup key reads back as its own text");
      // Every LLM that was tested has its chart; the embedding model has none.
      assert.equal(page.charts.length, home.ids.length - 1);
      assert.ok(page.marks > 150, `${page.marks} marks with their tooltips`);
      assert.equal(page.images, 0);
      assert.equal(page.scripts, 0);
      await new Promise((resolve) => setTimeout(resolve, 300)); // anything late would show too
      assert.deepEqual(
        browser.requests.map((r) => r.url),
        [`file://${file}`],
        "the only request is the page itself",
      );
      assert.deepEqual(requests.map((r) => r.url), [`file://${file}`]);
      // The README's picture: the demo fleet alone, without the markup-named model.
      const demo = join(out, "demo.html");
      const records = (await new LMStrix({ lmstudioDir: home.path }).records())
        .filter((r) => r.id !== HOSTILE_KEY);
      await Deno.writeTextFile(
        demo,
        await buildReport(lmstrixPaths(home.path), records, new Date()),
      );
      await browser.open(`file://${demo}`);
      const demoPage = JSON.parse(await browser.evaluate<string>(MODELS_IN_PAGE)) as PageModels;
      assert.equal(demoPage.shelf.length, home.ids.length - 1);
      const png = await browser.screenshot(1100, 1500);
      assert.deepEqual([...png.slice(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      assert.ok(png.length > 20_000, `a screenshot of ${png.length} bytes`);
      if (Deno.env.get("LMSTRIX_UPDATE_SCREENSHOT") === "1") {
        await Deno.writeFile(new URL("../docs/report.png", import.meta.url), png);
      }
    });

    await t.step("the request check sees a request when a page makes one", async () => {
      const leaky = join(out, "leaky.html");
      const port = closedPort();
      await Deno.writeTextFile(leaky, `<p>x</p><img src="http://127.0.0.1:${port}/a.png">`);
      await using browser = await startChromium();
      await browser.open(`file://${leaky}`);
      assert.ok(
        browser.requests.some((r) => r.url === `http://127.0.0.1:${port}/a.png`),
        JSON.stringify(browser.requests),
      );
      // With the report's policy the same element is blocked before it leaves the browser.
      const fenced = join(out, "fenced.html");
      const policy = /<meta http-equiv="Content-Security-Policy"[^>]*>/.exec(html)![0];
      await Deno.writeTextFile(fenced, `${policy}<img src="http://127.0.0.1:${port}/a.png">`);
      await browser.open(`file://${fenced}`);
      const image = browser.requests.find((r) => r.url.startsWith("http:"));
      assert.ok(image === undefined || image.blockedReason === "csp", JSON.stringify(image));
    });

    await t.step("the one-size check is drawn after its model's search, ringed", () => {
      const at = html.indexOf(`<article id="m`, html.indexOf(`data-model="${CHECKED.id}"><td`));
      const section = html.slice(html.indexOf(`data-model="${CHECKED.id}"><h3>`));
      assert.ok(at > 0);
      assert.match(section.slice(0, 20_000), /check at 20,480: load ctx 20,480: loaded/);
      assert.match(section.slice(0, 20_000), /class="ok one"/);
      assert.match(section, /2 attempts of one-size checks/);
    });

    await t.step("a report of fifty models stays under 1 MB", async () => {
      await using shelf = await shelfOf(home.path, 50);
      const page = await new LMStrix({ lmstudioDir: shelf.path }).report();
      const bytes = new TextEncoder().encode(page).length;
      for (const id of shelf.ids) assert.ok(page.includes(`<tr data-model="${id}">`), id);
      assert.ok(bytes < MB, `${bytes} bytes`);
      // The measure the README quotes (docs/report.md): printed for the record.
      console.log(`report of 50 models, each with the longest log: ${bytes} bytes`);
    });

    await t.step("a directory that does not exist is a usage error, with JSON", async () => {
      const run = await runCli(["report", "--out", join(out, "no/such/dir/r.html"), "--json"], {
        home: home.path,
      });
      assert.equal(run.code, 2, run.stderr);
      const document = JSON.parse(run.stdout) as { error: { message: string } };
      assert.match(document.error.message, /its directory does not exist/);
      assert.doesNotMatch(run.stderr, /\n\s+at /, "no stack trace");
    });
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("report --out: a directory gets the default name in it; no --out writes in the cwd", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await reportPath(dir, "/elsewhere"), join(dir, "lmstrix-report.html"));
    assert.equal(await reportPath(undefined, dir), join(dir, "lmstrix-report.html"));
    assert.equal(await reportPath("r.html", dir), join(dir, "r.html"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the report draws the latest search, resumed runs included, and every check", () => {
  const start = (resumed: boolean, check?: number) =>
    JSON.stringify({
      time: "t",
      model: "m",
      event: "run-start",
      run: "r",
      resumed,
      config: check === undefined ? { declared: 8192 } : { check },
    });
  const attempt = (askedContext: number, check?: number) =>
    JSON.stringify({
      ...loadAttempt(askedContext, { time: "t" }),
      ...(check === undefined ? {} : { check }),
    });
  const log = [
    start(false),
    attempt(1),
    attempt(2),
    start(false, 4096),
    attempt(4096, 4096),
    start(false), // a forced retest: what came before is history
    attempt(3),
    '{"cut short by a cr',
    start(true), // a resumed run goes on with the same search
    attempt(4),
  ].join("\n");
  const evidence = evidenceOf(log);
  assert.deepEqual(evidence.search.map((a) => a.askedContext), [3, 4]);
  assert.deepEqual(evidence.checks.map((a) => a.check), [4096]);
  assert.equal(evidence.earlier, 2);
});

Deno.test("the context axis is logarithmic across a wide span, linear across a narrow one", () => {
  const wide = contextScale([4096, 1_048_576], 0, 1000);
  assert.equal(wide.log, true);
  assert.deepEqual(wide.ticks.map((t) => t.label).slice(0, 3), ["2k", "4k", "8k"]);
  assert.equal(wide.ticks.at(-1)?.label, "1M");
  assert.equal(wide.x(2048), 0);
  assert.equal(wide.x(1_048_576), 1000);
  assert.ok(Math.abs(wide.x(32768) - (1000 * 4) / 9) < 0.1, "each of the 9 octaves as wide");
  const narrow = contextScale([4096, 8192], 0, 1000);
  assert.equal(narrow.log, false);
  assert.equal(narrow.x(4096), 500);
});

Deno.test("the report marks a limit that is only the --max-context cap with ≥, and says so", () => {
  const capped = record("capped", {
    status: "tested",
    declaredContext: 131072,
    loadableContext: 32768,
    workingContext: 32768,
    cappedAt: 32768,
    testedAt: "2026-12-07T19:00:00.000Z",
  });
  const load = JSON.stringify(
    loadAttempt(32768, { time: "2026-12-07T19:00:00.000Z", model: "capped" }),
  );
  const html = renderReport({
    models: [{ record: capped, evidence: evidenceOf(load) }],
    generatedAt: new Date("2026-12-07T20:00:00Z"),
    version: "1.0.0",
  });
  assert.match(html, /<td class="n">&ge;32,768<\/td><td class="n">&ge;32,768<\/td>/);
  assert.match(html, /loadable 32,768: nothing above it was seen to fail \(the test's --max/);
});

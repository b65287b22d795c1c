/**
 * The README's (and docs/usage.md's) example outputs, made by running the real CLI on the demo
 * fleet (the emulator with scripts/demo_fleet.json, as `deno task demo` does) at 80 columns, so
 * that the examples agree with each other and with the code. Each example is a fenced block right
 * after a line `<!-- example: NAME -->`; this script renders them all in one session, in order.
 *
 * Usage:
 *   deno task readme:examples           check: exit 1 and name the examples that differ
 *   deno task readme:examples --write   rewrite the README's example blocks
 *
 * What varies from run to run (durations, dates, measured speeds) is left as the run printed it
 * and masked when comparing ({@linkcode maskVolatile}); the emulator's port and the temporary
 * home are shown as LM Studio's defaults.
 *
 * @module
 */

import { DEMO_FLEET_URL, readProfilesFile } from "../emulator/validation.ts";
import { CANCEL_HOLD_MS, startEmulator } from "../emulator/server.ts";

const ROOT = new URL("../../", import.meta.url);
const README = new URL("README.md", ROOT);

/** The home and server the examples show, whatever the run used. */
const SHOWN_HOME = "/home/me/.lmstudio";
const SHOWN_SERVER = "ws://127.0.0.1:1234";

/** One way of showing a step's output as an example. */
interface View {
  /** The example's name in the README or docs/usage.md. */
  example?: string;
  /**
   * Which streams the example shows: both (stdout, then stderr; the default), or progress first
   * (stderr's progress, stdout, then stderr's closing lines), or one of them.
   */
  streams?: "stdout" | "stderr" | "both" | "progress-first";
  /** How the example's command line reads, when not `lmstrix <args>`. */
  shown?: string;
  /** Turns stdout into what the example shows (a part of a JSON document). */
  pick?: (stdout: string) => string;
  /** Turns stderr into what the example shows (one model's progress). */
  pickStderr?: (stderr: string) => string;
  /** Shows only the first this many lines of output, then `...`. */
  head?: number;
}

/** One step of the session: a command, and the examples it makes (none: it sets the scene). */
interface Step extends View {
  args: string[];
  /** More examples of the same run (the full output, for docs/usage.md). */
  also?: readonly View[];
}

/** The session, in order: what a newcomer types on the demo fleet. */
export const SESSION: readonly Step[] = [
  {
    args: ["scan"],
    example: "scan",
    streams: "stdout",
    head: 2,
    also: [{ example: "usage-scan", streams: "progress-first" }],
  },
  {
    args: ["test", "mistral-nemo"],
    example: "scan",
    streams: "stdout",
    also: [{ example: "usage-test", streams: "progress-first" }],
  },
  {
    args: ["test", "--all"],
    also: [{
      example: "usage-checks",
      streams: "stderr",
      shown: "lmstrix test --all   # where llama-3.1-8b-instruct begins:",
      // One model's first attempts: where the guardrail refuses, the bisection runs on checks.
      pickStderr: (stderr) => {
        const lines = stderr.split("\n");
        const from = lines.findIndex((l) => /^\[\d+\/\d+\] llama-3\.1-8b-instruct/.test(l));
        return lines.slice(from, from + 13).join("\n") + "\n  ...";
      },
    }],
  },
  { args: ["list"], example: "list", head: 6, also: [{ example: "usage-list" }] },
  {
    args: ["show", "mistral-nemo"],
    example: "show",
    // The working context and what the test measured; the other rows are left out here.
    pick: (stdout) => {
      const lines = stdout.split("\n");
      const working = lines.find((l) => l.startsWith("working"))!;
      const from = lines.findIndex((l) => l.startsWith("took"));
      const to = lines.findIndex((l) => l.startsWith("applied"));
      return [lines[0], "...", working, "...", ...lines.slice(from, to), "..."].join("\n");
    },
    streams: "stdout",
    also: [{ example: "usage-show" }],
  },
  { args: ["status"], example: "usage-status" },
  {
    args: ["apply", "mistral-nemo", "qwen2.5-7b-instruct-1m", "gemma-2", "--margin", "5%"],
    example: "apply",
  },
  {
    args: ["test", "gemma-2", "--json", "--quiet"],
    example: "test-json",
    streams: "stdout",
    shown: "lmstrix test gemma-2 --json --quiet   # tested already: kept",
    pick: (stdout) => {
      const { results: [result], ...rest } = JSON.parse(stdout);
      const pack = (fields: string[], indent: string) => {
        const lines = [indent];
        for (const field of fields) {
          const last = lines.length - 1;
          if (lines[last]!.length + field.length > 88) lines.push(indent + field);
          else lines[last] += (lines[last] === indent ? "" : " ") + field;
        }
        return lines.join("\n");
      };
      const fields = (o: object) =>
        Object.entries(o).map(([k, v]) => `"${k}": ${JSON.stringify(v)},`);
      const inner = fields(result);
      inner[inner.length - 1] = inner.at(-1)!.slice(0, -1);
      const outer = Object.entries(rest).map(([k, v]) =>
        `  "${k}": ${JSON.stringify(v).replaceAll(/([,:])(?=["{\[\d])/g, "$1 ")}`
      );
      return ["{", '  "results": [{', pack(inner, "    "), "  }],", outer.join(",\n"), "}"]
        .join("\n");
    },
  },
  { args: ["status", "--json"], example: "usage-status-json", streams: "stdout" },
  {
    args: ["show", "mistral-nemo"],
    example: "usage-applied",
    shown: "lmstrix show mistral-nemo | grep applied",
    streams: "stdout",
    pick: (stdout) => stdout.split("\n").filter((l) => l.startsWith("applied")).join("\n"),
  },
  { args: ["status"], example: "usage-applied", head: 2 },
  { args: ["apply", "--all"], example: "usage-apply-all" },
  { args: ["list", "--format", "markdown"], example: "usage-markdown", head: 4 },
  { args: ["list", "--format", "csv"], example: "usage-csv", head: 3 },
  { args: ["apply", "--undo", "--all", "--dry-run"], example: "usage-undo-dry-run", head: 4 },
  { args: ["test", "nemotron"], example: "error", streams: "stderr" },
  {
    args: ["scan", "--server", "ws://127.0.0.1:9"],
    example: "usage-unreachable",
    streams: "stderr",
  },
  {
    args: ["scan", "--lmstudio-dir", "/home/me/.lmstuido"],
    example: "usage-no-home",
    streams: "stderr",
  },
  { args: ["apply", "--undo", "--all", "--quiet"] },
];

/** What a run of the CLI printed. */
interface Printed {
  code: number;
  stdout: string;
  stderr: string;
}

/** The example `view` makes of what `step` printed. */
function render(step: Step, view: View, printed: Printed): string {
  const streams = view.streams ?? "both";
  const stdout = (view.pick ? view.pick(printed.stdout) : printed.stdout).trimEnd();
  const stderr = (view.pickStderr ? view.pickStderr(printed.stderr) : printed.stderr).trimEnd();
  // Progress (the leading stderr lines: "Scanning...", "[1/1] model", indented attempts) comes
  // before the results; the closing lines (a summary, where the registry is) after them.
  const lines = stderr.split("\n");
  let lead = 0;
  while (lead < lines.length && /^(\[|\s|Scanning)/.test(lines[lead]!)) lead++;
  const shown = {
    stdout: [stdout],
    stderr: [stderr],
    both: [stdout, stderr],
    "progress-first": [lines.slice(0, lead).join("\n"), stdout, lines.slice(lead).join("\n")],
  }[streams];
  let text = [
    `$ ${view.shown ?? `lmstrix ${step.args.join(" ")}`}`,
    ...shown,
    ...(printed.code === 0 ? [] : [`(exit ${printed.code})`]),
  ].filter((part) => part !== "").join("\n");
  if (view.head !== undefined) {
    text = text.split("\n").slice(0, view.head + 1).join("\n") + "\n...";
  }
  return text;
}

/** Runs the session on a fresh home and returns each example's text, by name. */
export async function renderExamples(): Promise<Map<string, string>> {
  const flags = (await Deno.readTextFile(new URL("scripts/permissions.flags", ROOT))).trim()
    .split(/\s+/);
  const home = await Deno.makeTempDir({ prefix: "lmstrix-readme-" });
  await Deno.mkdir(`${home}/.internal`);
  const emulator = await startEmulator({
    profiles: await readProfilesFile(DEMO_FLEET_URL),
    port: 0,
    cancelHoldMs: CANCEL_HOLD_MS,
  });
  const examples = new Map<string, string>();
  try {
    for (const step of SESSION) {
      const output = await new Deno.Command("deno", {
        args: ["run", ...flags, new URL("main.ts", ROOT).pathname, ...step.args],
        cwd: ROOT.pathname,
        env: {
          LMSTRIX_SERVER: emulator.url,
          LMSTRIX_LMSTUDIO_DIR: home,
          COLUMNS: "80",
          NO_COLOR: "1",
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const decoder = new TextDecoder();
      const printed: Printed = {
        code: output.code,
        stdout: decoder.decode(output.stdout),
        stderr: decoder.decode(output.stderr),
      };
      for (const view of [step, ...(step.also ?? [])]) {
        if (view.example === undefined) continue;
        const shown = render(step, view, printed)
          .replaceAll(home.replace(/\/$/, ""), SHOWN_HOME)
          .replaceAll(emulator.url, SHOWN_SERVER);
        // Steps of one example follow each other, as in a terminal.
        const before = examples.get(view.example);
        examples.set(view.example, before === undefined ? shown : `${before}\n\n${shown}`);
      }
    }
  } finally {
    await emulator.close();
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
  return examples;
}

/**
 * Masks what changes from run to run: durations, dates and times of day, measured speeds and the
 * emulated minutes, so that two renderings of the same session compare equal.
 */
export function maskVolatile(text: string): string {
  return text
    .replace(/; about [^\n]* left/g, "; <time left>")
    .replace(/\d{4}-\d\d-\d\d(T| )?/g, "<date> ")
    .replace(/\d\d:\d\d:\d\d(\.\d+)?Z?/g, "<time>")
    .replace(/\d+(\.\d+)? (ms|s|min)\b/g, "<duration>")
    .replace(/under <duration>/g, "<duration>")
    .replace(/[\d,]+ tokens\/s/g, "<speed>")
    .replace(/"(testedAt|seconds)": [^,\n]+/g, '"$1": <volatile>')
    .replace(/ +$/gm, "");
}

/** The README's example blocks, by name: the text between the fence lines after each marker. */
export function readmeExamples(readme: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const match of readme.matchAll(/<!-- example: ([\w-]+) -->\n+```\n([\s\S]*?)\n```/g)) {
    found.set(match[1]!, match[2]!);
  }
  return found;
}

/** `readme` with each example block replaced by its rendering. */
export function writeExamples(readme: string, examples: ReadonlyMap<string, string>): string {
  return readme.replace(
    /(<!-- example: ([\w-]+) -->\n+```\n)[\s\S]*?(\n```)/g,
    (whole, open: string, name: string, close: string) =>
      examples.has(name) ? open + examples.get(name) + close : whole,
  );
}

/** The files whose example blocks the session renders. */
export const EXAMPLE_FILES: readonly URL[] = [README, new URL("docs/usage.md", ROOT)];

/**
 * The names of the examples in `files` that differ from `rendered` (masked), or that the session
 * does not render at all.
 */
export function differingExamples(
  texts: readonly string[],
  rendered: ReadonlyMap<string, string>,
): string[] {
  const differ: string[] = [];
  for (const text of texts) {
    for (const [name, shown] of readmeExamples(text)) {
      const fresh = rendered.get(name);
      if (fresh === undefined || maskVolatile(shown) !== maskVolatile(fresh)) differ.push(name);
    }
  }
  return differ;
}

if (import.meta.main) {
  const rendered = await renderExamples();
  const texts = await Promise.all(EXAMPLE_FILES.map((file) => Deno.readTextFile(file)));
  if (Deno.args.includes("--write")) {
    for (const [i, file] of EXAMPLE_FILES.entries()) {
      await Deno.writeTextFile(file, writeExamples(texts[i]!, rendered));
    }
    console.log(`Wrote the examples into ${EXAMPLE_FILES.map((f) => f.pathname).join(", ")}`);
  } else {
    const differ = differingExamples(texts, rendered);
    if (differ.length > 0) {
      console.error(`Examples that differ from the code: ${differ.join(", ")}`);
      console.error("run: deno task readme:examples --write");
      Deno.exit(1);
    }
    console.log("The examples agree with the code.");
  }
}

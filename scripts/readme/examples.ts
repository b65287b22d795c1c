/**
 * The README's example outputs, made by running the real CLI on the demo fleet (the emulator with
 * scripts/demo_fleet.json, as `deno task demo` does) at 80 columns, so that the examples agree
 * with each other and with the code. Each example in the README is a fenced block right after a
 * line `<!-- example: NAME -->`; this script renders them all in one session, in order.
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

/** One step of the session: a command, and the README example it makes (if any). */
interface Step {
  args: string[];
  /** The example's name in the README; none: the step only sets the scene. */
  example?: string;
  /** Which streams the example shows (stdout, then stderr): the default is both. */
  streams?: "stdout" | "stderr" | "both";
  /** How the example's command line reads, when not `lmstrix <args>`. */
  shown?: string;
  /** Turns stdout into what the example shows (a part of a JSON document). */
  pick?: (stdout: string) => string;
}

/** The session, in order: what a newcomer types on the demo fleet. */
export const SESSION: readonly Step[] = [
  { args: ["scan"], example: "scan", streams: "stdout" },
  { args: ["test", "mistral-nemo"], example: "test-one", streams: "stdout" },
  { args: ["test", "--all", "--quiet"] },
  { args: ["list"], example: "list" },
  { args: ["show", "mistral-nemo"], example: "show" },
  { args: ["status"], example: "status" },
  {
    args: ["apply", "mistral-nemo", "qwen2.5-7b-instruct-1m", "gemma-2", "--margin", "5%"],
    example: "apply",
  },
  { args: ["apply", "--undo", "--all", "--dry-run"], example: "undo-dry-run" },
  { args: ["test", "gemma-2", "--json", "--quiet"], example: "test-json", streams: "stdout" },
  {
    args: ["list", "--json"],
    example: "record-json",
    streams: "stdout",
    shown: "lmstrix list --json   # one of its records:",
    pick: (stdout) => {
      const models = JSON.parse(stdout).models as { id: string }[];
      const gemma = models.find((m) => m.id === "gemma-2-9b-it");
      const { costs: _costs, applied: _applied, ...record } = gemma as Record<string, unknown>;
      return JSON.stringify(record, null, 2) + "\n";
    },
  },
  { args: ["status", "--json"], example: "status-json", streams: "stdout" },
  { args: ["test", "nemotron"], example: "error", streams: "stderr" },
  { args: ["apply", "--undo", "--all", "--quiet"] },
];

/** What a run of the CLI printed. */
interface Printed {
  code: number;
  stdout: string;
  stderr: string;
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
      if (step.example === undefined) continue;
      const streams = step.streams ?? "both";
      const stdout = step.pick ? step.pick(printed.stdout) : printed.stdout;
      const text = [
        `$ ${step.shown ?? `lmstrix ${step.args.join(" ")}`}`,
        ...(streams === "stderr" ? [] : [stdout.trimEnd()]),
        ...(streams === "stdout" ? [] : [printed.stderr.trimEnd()]),
        ...(printed.code === 0 ? [] : [`(exit ${printed.code})`]),
      ].filter((part) => part !== "").join("\n");
      examples.set(
        step.example,
        text.replaceAll(home.replace(/\/$/, ""), SHOWN_HOME).replaceAll(emulator.url, SHOWN_SERVER),
      );
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
  for (const match of readme.matchAll(/<!-- example: ([\w-]+) -->\n```\n([\s\S]*?)\n```/g)) {
    found.set(match[1]!, match[2]!);
  }
  return found;
}

/** `readme` with each example block replaced by its rendering. */
export function writeExamples(readme: string, examples: ReadonlyMap<string, string>): string {
  return readme.replace(
    /(<!-- example: ([\w-]+) -->\n```\n)[\s\S]*?(\n```)/g,
    (whole, open: string, name: string, close: string) =>
      examples.has(name) ? open + examples.get(name) + close : whole,
  );
}

if (import.meta.main) {
  const rendered = await renderExamples();
  const readme = await Deno.readTextFile(README);
  if (Deno.args.includes("--write")) {
    await Deno.writeTextFile(README, writeExamples(readme, rendered));
    console.log(`Wrote ${rendered.size} examples into README.md`);
  } else {
    const shown = readmeExamples(readme);
    const differ = [...rendered].filter(([name, text]) =>
      maskVolatile(shown.get(name) ?? "") !== maskVolatile(text)
    ).map(([name]) => name);
    if (differ.length > 0) {
      console.error(`README examples differ from the code: ${differ.join(", ")}`);
      console.error("run: deno task readme:examples --write");
      Deno.exit(1);
    }
    console.log(`The README's ${rendered.size} examples agree with the code.`);
  }
}

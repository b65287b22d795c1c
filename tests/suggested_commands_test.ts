/**
 * Every command the tool suggests works: the quoted `"lmstrix ..."` commands of its messages and
 * hints, and the examples at the end of each `--help`, are collected from the output of a
 * newcomer's session and run, at 80 columns, against the same LM Studio and home. A suggestion
 * that is a usage error (exit 2) or an unexpected failure fails the test.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import type { Emulator } from "../scripts/emulator/server.ts";
import { suggestFlags } from "../src/cli/flag_suggestion.ts";
import { type CliRun, runCli, runCliAgainst, tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";

/** A small shelf with the names the examples use; "qwen" names two of them. */
const SHELF: ModelProfile[] = [
  testProfile("qwen2.5-7b-instruct", {
    declaredContext: 16384,
    needleFailAbove: 9_000,
    needleFailMode: "wrong-number",
  }),
  testProfile("qwen3-8b", { declaredContext: 16384, loadFailAbove: 12_000 }),
  testProfile("mistral-nemo-instruct-2407", {
    declaredContext: 16384,
    needleFailAbove: 7_000,
    needleFailMode: "wrong-number",
  }),
  testProfile("gemma-2-9b-it", { declaredContext: 8192 }),
  {
    ...testProfile("text-embedding-nomic-embed-text-v1.5", { declaredContext: 2048 }),
    type: "embedding",
    architecture: "nomic-bert",
  },
];

/** Where the examples' `http://localhost:1234` stands for the test's server. */
const EXAMPLE_SERVER = "http://localhost:1234";

/** The quoted `"lmstrix ..."` commands in `text` (a command wrapped over lines joined again). */
function quotedCommands(text: string): string[] {
  return [...text.matchAll(/"(lmstrix(?: [^"]*)?)"/g)].map((m) => m[1]!.replace(/\s+/g, " "));
}

/** The examples at the end of a `--help`. */
function helpExamples(text: string): string[] {
  const after = text.split("\nExamples:\n")[1] ?? "";
  return after.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("lmstrix "));
}

Deno.test("every command lmstrix suggests, in a message, a hint or a help's examples, runs", async (t) => {
  await using home = await tempHome();
  await withEmulator(SHELF, async (emulator: Emulator) => {
    const ran = new Map<string, CliRun>();
    const cli = (args: string[]) => runCliAgainst(emulator.url, home.path, args, { COLUMNS: "80" });
    /** Runs `command` as suggested (once per session) and checks it is not refused. */
    const follow = async (command: string, from: string) => {
      if (ran.has(command)) return;
      const args = command.split(" ").slice(1).map((a) =>
        a === EXAMPLE_SERVER ? emulator.url.replace(/^ws/, "http") : a
      );
      const run = await cli(args);
      ran.set(command, run);
      assert.ok(
        run.code === 0 || run.code === 1,
        `"${command}" (suggested by "${from}") exited ${run.code}:\n${run.stderr}`,
      );
      assert.doesNotMatch(run.stderr, /Unexpected failure|^\s+at /m, command);
    };
    /** Runs `args` as a user would, then every command its output suggests. */
    const session = async (args: string[]) => {
      const run = await cli(args);
      const from = `lmstrix ${args.join(" ")}`;
      for (const line of (run.stdout + run.stderr).split("\n")) {
        // Only a path may pass the width: it is kept whole, to be copied.
        const path = line.split(" ").some((word) => word.includes("/") && word.length > 40);
        assert.ok(line.length < 80 || path, `${from}: a line of ${line.length} columns: ${line}`);
      }
      for (const command of quotedCommands(run.stdout + run.stderr)) await follow(command, from);
      return run;
    };

    await t.step("an empty home: list, apply and test say what to run first", async () => {
      await session(["list"]);
      await session(["apply", "--all"]);
      assert.ok(ran.has("lmstrix scan"), [...ran.keys()].join(", "));
    });
    await t.step("usage errors suggest commands that work", async () => {
      for (
        const args of [
          ["test"],
          ["test", "--all", "qwen3-8b"],
          ["test", "qwen"],
          ["test", "nemotron"],
          ["show", "qwen"],
          ["apply"],
          ["apply", "--undo"],
          ["test", "--max-ctx", "4096", "qwen3-8b"],
          ["test", "text-embedding-nomic-embed-text-v1.5"],
          ["test", "--ctx", "32k"],
          ["test", "qwen3-8b", "--ctx", "100"],
          ["run", "qwen3-8b", "word ".repeat(24_000)],
        ]
      ) {
        const run = await session(args);
        assert.equal(run.code, 2, `lmstrix ${args.join(" ")}: ${run.stderr}`);
        assert.match(run.stderr, /^hint: /m);
      }
      for (const expected of ["lmstrix list", "lmstrix test --all", "lmstrix test --help"]) {
        assert.ok(ran.has(expected), `"${expected}" was suggested and run`);
      }
    });
    await t.step("apply suggests the undo that puts the files back", async () => {
      await session(["apply", "--all"]);
      assert.ok(ran.has("lmstrix apply --undo --all"));
      const config = join(home.path, ".internal", "user-concrete-model-default-config");
      const left = await Array.fromAsync(Deno.readDir(config)).catch(() => []);
      assert.deepEqual(left, [], "the suggested undo removed what apply created");
      await session(["apply", "mistral-nemo", "gemma"]);
      assert.ok(ran.has("lmstrix apply --undo mistral-nemo-instruct-2407 gemma-2-9b-it"));
    });
    await t.step(
      "a value applied before a retest: status and show say how to update it",
      async () => {
        // Its undo was followed above, so the values stay applied this time.
        await session(["apply", "--all"]);
        // A dry run of the undo says what it would do, and does nothing.
        const dry = await session(["apply", "--undo", "--all", "--dry-run"]);
        assert.match(dry.stdout, /^qwen3-8b +[\d,]+ +- +would restore$/m);
        assert.doesNotMatch(dry.stdout, /\brestored$/m);
        assert.match(
          (await cli(["apply", "--undo", "--all", "--dry-run"])).stdout,
          /would restore/,
        );
        const file = join(home.path, "lmstrix", "models.json");
        const registry = JSON.parse(await Deno.readTextFile(file));
        registry.models["qwen3-8b"].workingContext -= 1000;
        registry.models["gemma-2-9b-it"].workingContext -= 1000;
        await Deno.writeTextFile(file, JSON.stringify(registry, null, 2));
        await session(["show", "qwen3-8b"]); // Its suggestion updates this model only.
        await session(["status"]);
        assert.ok(ran.has("lmstrix apply --all"));
        assert.ok(ran.has("lmstrix apply qwen3-8b"));
      },
    );
    await t.step("each command's help ends with two or three examples, and they run", async () => {
      for (const command of ["", "scan", "list", "test", "status", "show", "apply", "report"]) {
        const args = command === "" ? ["--help"] : [command, "--help"];
        const help = await cli(args);
        assert.equal(help.code, 0);
        // Only the commands that talk to LM Studio advertise --server.
        const talks = ["", "scan", "test"].includes(command);
        assert.equal(help.stdout.includes("--server"), talks, `${command} --help and --server`);
        if (command === "report") continue; // a note on the page follows its examples
        const examples = helpExamples(help.stdout);
        assert.ok(examples.length >= 2 && examples.length <= 3, `${command}: ${examples}`);
        assert.ok(help.stdout.trimEnd().endsWith(examples.at(-1)!), "the examples end the help");
        for (const example of examples) {
          if (command !== "") assert.ok(example.startsWith(`lmstrix ${command}`), example);
          ran.delete(example); // An example runs in this state too, even if a message named it.
          await follow(example, `lmstrix ${args.join(" ")}`);
        }
      }
    });
  });
});

Deno.test("an unknown flag gets a did-you-mean, also for the words lms users bring", async (t) => {
  const known = ["--max-context", "--min-context", "--precision", "--server", "--force"];
  for (
    const [typed, expected] of [
      ["--max-ctx", ["--max-context"]],
      ["--min-ctx=2048", ["--min-context"]],
      ["--prec", ["--precision"]],
      ["-c", ["--max-context"]],
      ["--context-length", ["--max-context"]],
      ["--port", ["--server"]],
      ["--verbosity-level", []],
    ] as const
  ) {
    await t.step(`${typed} -> ${expected.join(", ") || "nothing"}`, () => {
      assert.deepEqual(suggestFlags(typed, known), expected);
    });
  }
  await t.step(
    "lmstrix test --max-ctx 4096 x: exit 2, the suggestion and the command's help",
    async () => {
      await using home = await tempHome();
      const run = await runCli(["test", "--max-ctx", "4096", "x"], { home: home.path });
      assert.equal(run.code, 2);
      assert.equal(
        run.stderr,
        "error: unknown option '--max-ctx' (Did you mean --max-context?)\n" +
          'hint: run "lmstrix test --help" to see the options\n',
      );
    },
  );
});

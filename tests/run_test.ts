/**
 * `lmstrix run`, end to end against the emulator through the real SDK: the model loads at its
 * tested working context, the answer streams to stdout, `--json` is the contract's document,
 * `--max-tokens` and `--temperature` reach LM Studio, an untested model and a prompt too long are
 * usage errors that say the numbers (and which tested models the prompt would fit), and nothing
 * stays loaded, also after Ctrl-C.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { LMStrix, PromptTooLongError, UsageError } from "../mod.ts";
import type { ModelProfile } from "../scripts/emulator/profile.ts";
import type { Emulator } from "../scripts/emulator/server.ts";
import { countTokens, tokenPieces } from "../scripts/emulator/tokenizer.ts";
import { answerText } from "../src/cli/run.ts";
import { lmstrixPaths } from "../src/paths.ts";
import { loadRegistry, saveRegistry } from "../src/registry/registry.ts";
import { tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";
import {
  assertNoStackTrace,
  lmstrix,
  loadInFlight,
  predictionInFlight,
  spawnCli,
  waitFor,
} from "./support/reliability.ts";

/** The emulator's answer to a prompt that is neither a needle nor `2+2=`. */
const ANSWER = " Sure. Here is a short answer to your request.";

/** Working contexts the registry is given, as a test would have stored them. */
const WORKING: Record<string, number> = { tiny: 4096, small: 8192, mid: 12288 };

const FLEET: ModelProfile[] = [
  testProfile("tiny", { declaredContext: 8192 }),
  testProfile("small", { declaredContext: 16384 }),
  testProfile("mid", { declaredContext: 16384 }),
  testProfile("never-tested", { declaredContext: 32768 }),
];

/** Runs `fn` on a scanned home whose models of {@link WORKING} are tested. */
async function shelf(
  fn: (emulator: Emulator, home: string) => Promise<void>,
  profiles = FLEET,
): Promise<void> {
  await using home = await tempHome();
  await withEmulator(profiles, async (emulator) => {
    assert.equal((await lmstrix(emulator, home.path, ["scan", "-q"])).code, 0);
    const paths = lmstrixPaths(home.path);
    const registry = await loadRegistry(paths);
    for (const [id, working] of Object.entries(WORKING)) {
      registry.models[id] = {
        ...registry.models[id]!,
        status: "tested",
        loadableContext: working,
        workingContext: working,
        testedAt: "2026-12-07T19:00:00.000Z",
      };
    }
    await saveRegistry(paths, registry);
    await fn(emulator, home.path);
  });
}

Deno.test("run loads the model at its working context, streams the answer and unloads it", async (t) => {
  await shelf(async (emulator, home) => {
    await t.step("the answer on stdout, the statistics on stderr", async () => {
      const run = await lmstrix(emulator, home, ["run", "small", "Tell me a story."]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, `${ANSWER}\n`);
      assert.match(run.stderr, /loading small at 8,192 tokens/);
      assert.match(run.stderr, /small at 8,192: 5 prompt tokens, 11 answer tokens, .*eosFound/);
      const stats = emulator.stats();
      assert.deepEqual(stats.loads.map((l) => [l.modelKey, l.askedContext]), [["small", 8192]]);
      assert.equal(stats.predictions.at(-1)?.temperature, 0, "deterministic by default");
      assert.deepEqual(stats.loaded, [], "nothing is left loaded");
    });

    await t.step(
      "--json: the contract's document; --max-tokens and --temperature reach LM Studio",
      async () => {
        const run = await lmstrix(emulator, home, [
          "run",
          "mid",
          "Tell me a story.",
          "--max-tokens",
          "3",
          "--temperature",
          "0.7",
          "--json",
        ]);
        assert.equal(run.code, 0, run.stderr);
        const document = JSON.parse(run.stdout) as Record<string, unknown>;
        assert.deepEqual(Object.keys(document), ["id", "context", "promptTokens", "text", "stats"]);
        assert.equal(document.id, "mid");
        assert.equal(document.context, 12288);
        assert.equal(document.promptTokens, countTokens("Tell me a story."));
        assert.equal(document.text, tokenPieces(ANSWER).slice(0, 3).join(""), "three tokens");
        const stats = document.stats as Record<string, unknown>;
        assert.equal(stats.stopReason, "maxPredictedTokensReached");
        assert.equal(stats.predictedTokensCount, 3);
        assert.equal(emulator.stats().predictions.at(-1)?.temperature, 0.7);
      },
    );

    await t.step("--file reads the prompt; --quiet leaves the answer alone on stdout", async () => {
      const file = join(home, "prompt.txt");
      await Deno.writeTextFile(file, "What is in this file?\n");
      const run = await lmstrix(emulator, home, ["run", "tiny", "--file", file, "-q"]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, `${ANSWER}\n`);
      assert.equal(run.stderr, "");
      assert.equal(emulator.stats().loads.at(-1)?.askedContext, 4096);
    });

    await t.step("the library streams the same answer through onText", async () => {
      const library = new LMStrix({ server: emulator.url, lmstudioDir: home });
      const fragments: string[] = [];
      const result = await library.run("tiny", {
        prompt: "Tell me a story.",
        onText: (text) => fragments.push(text),
      });
      assert.equal(result.text, ANSWER);
      assert.ok(fragments.length > 1, `${fragments.length} fragments`);
      assert.equal(fragments.join(""), ANSWER);
      await assert.rejects(() => library.run("never-tested", { prompt: "x" }), UsageError);
    });
    assert.deepEqual(emulator.stats().loaded, []);
  });
});

Deno.test("run refuses an untested model and a prompt too long, saying the numbers", async (t) => {
  await shelf(async (emulator, home) => {
    await t.step("an untested model: exit 2 with its numbers, nothing loaded", async () => {
      const run = await lmstrix(emulator, home, ["run", "never-tested", "hello", "--json"]);
      assert.equal(run.code, 2, run.stderr);
      const { error } = JSON.parse(run.stdout) as { error: { message: string } };
      assert.match(
        error.message,
        /"never-tested" has no tested working context \(status untested; declared 32,768/,
      );
      assert.match(run.stderr, /hint: run "lmstrix test never-tested" first/);
      assert.equal(emulator.stats().loads.length, 0);
    });

    await t.step(
      "a prompt longer than the working context: exit 2, the models it fits",
      async () => {
        const prompt = "The grass is green and the sky is blue. ".repeat(600);
        const tokens = countTokens(prompt);
        assert.ok(tokens > 4096 && tokens < 8192 - 64, `${tokens} tokens`);
        const run = await lmstrix(emulator, home, ["run", "tiny", prompt]);
        assert.equal(run.code, 2, run.stderr);
        assert.equal(run.stdout, "", "no answer");
        const text = run.stderr.replace(/\s+/g, " ");
        assert.match(
          text,
          new RegExp(
            `The prompt has ${tokens.toLocaleString("en-US")} tokens; "tiny" works with at ` +
              `most 4,032 \\(its working context of 4,096 less 64 for the answer\\)`,
          ),
        );
        assert.match(text, /hint: it would fit "small", "mid" \(counted with this model's/);
        assertNoStackTrace(run.stderr);
        assert.deepEqual(emulator.stats().loaded, [], "the model it loaded to count is unloaded");
        assert.equal(emulator.stats().predictions.length, 0, "nothing was sent to predict");

        const library = new LMStrix({ server: emulator.url, lmstudioDir: home });
        const error = await library.run("tiny", { prompt }).catch((e) => e);
        assert.ok(error instanceof PromptTooLongError);
        assert.equal(error.promptTokens, tokens);
        assert.deepEqual(error.fits, ["small", "mid"]);
      },
    );

    const cases: [string, string[], RegExp][] = [
      ["no prompt", ["run", "small"], /Give a prompt/],
      ["both a prompt and --file", ["run", "small", "x", "--file", "f"], /not both/],
      ["a file that is not there", ["run", "small", "--file", "/nonexistent/p.txt"], /no such/],
      ["an empty prompt", ["run", "small", "  "], /The prompt is empty/],
      ["a bad temperature", ["run", "small", "x", "--temperature", "hot"], /0 to 10/],
      ["a bad --max-tokens", ["run", "small", "x", "--max-tokens", "-1"], /positive whole/],
    ];
    for (const [what, args, message] of cases) {
      await t.step(`${what}: exit 2`, async () => {
        const run = await lmstrix(emulator, home, args);
        assert.equal(run.code, 2, run.stderr);
        assert.match(run.stderr, message);
        assertNoStackTrace(run.stderr);
      });
    }
  });
});

Deno.test("Ctrl-C during run's load or answer exits 130 and leaves nothing loaded", async (t) => {
  for (const phase of ["load", "load on a server that ignores the cancel", "answer"] as const) {
    await t.step(`during the ${phase}`, async () => {
      const delay = phase === "answer" ? { predict: 800 } : { load: 800 };
      const stubborn = phase.includes("ignores") ? { cancelIgnored: true } : {};
      const slow = FLEET.map((p) =>
        p.modelKey === "small" ? { ...p, realDelayMs: delay, ...stubborn } : p
      );
      await shelf(async (emulator, home) => {
        const run = spawnCli(emulator, home, ["run", "small", "Tell me a story."]);
        await waitFor(`the ${phase} in flight`, () => {
          const stats = emulator.stats();
          return phase === "answer" ? predictionInFlight(stats) : loadInFlight(stats);
        });
        run.child.kill("SIGINT");
        const stopped = await run.done;
        assert.equal(stopped.code, 130, stopped.stderr);
        assert.equal(stopped.stdout, "", "no answer");
        assertNoStackTrace(stopped.stderr);
        await waitFor("nothing loaded", () => {
          const stats = emulator.stats();
          return !loadInFlight(stats) && stats.loaded.length === 0;
        }, 5_000);
        if (phase === "answer") {
          assert.equal(emulator.stats().predictions.at(-1)?.stopReason, "userStopped");
        }
      }, slow);
    });
  }
});

Deno.test("an answer's control characters are shown escaped; newlines and tabs stay", () => {
  assert.equal(answerText("a\nb\tc"), "a\nb\tc");
  assert.equal(answerText("x\x1b[2Jy\r"), "x\\x1b[2Jy\\r");
  assert.equal(answerText("\u202eevil"), "\\u202eevil");
});

/**
 * The library speaks its own words: an error's hint names the options and methods a program
 * uses (`pass { server }`, `lmstrix.list()`), not the CLI's flags, which the CLI keeps; and a
 * program missing several permissions is told them all in one error.
 *
 * @module
 */

import assert from "node:assert/strict";
import { LMStrix, LmStudioUnreachableError, ModelNotFoundError } from "../mod.ts";
import { libraryHint } from "../src/library_guard.ts";
import { closedPort, runCli, tempHome } from "./support/cli.ts";

Deno.test("library hints name options and methods, not flags", () => {
  assert.equal(
    libraryHint('start the server with "lms server start" or pass --server'),
    'start the server with "lms server start" or pass { server }',
  );
  assert.equal(
    libraryHint('run "lmstrix list" to see the model ids, or "lmstrix scan" to refresh them'),
    "call lmstrix.list() to see the model ids, or lmstrix.scan() to refresh them",
  );
  assert.equal(
    libraryHint("check the file's permissions and the --lmstudio-dir in use"),
    "check the file's permissions and the { lmstudioDir } in use",
  );
  assert.equal(
    libraryHint("lower --min-context or raise --max-context"),
    "lower { minContext } or raise { maxContext }",
  );
});

Deno.test("a library error's hint speaks of options; the CLI's of flags", async (t) => {
  await using home = await tempHome();
  const server = `ws://127.0.0.1:${closedPort()}`;
  await t.step("unreachable LM Studio: pass { server }", async () => {
    const error = await new LMStrix({ server, lmstudioDir: home.path }).scan().then(
      () => assert.fail("scan reached a closed port"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof LmStudioUnreachableError);
    assert.match(error.hint ?? "", /pass \{ server \}/);
    assert.doesNotMatch(error.hint ?? "", /--/);
  });
  await t.step("an unknown model: call lmstrix.list()", async () => {
    const error = await new LMStrix({ lmstudioDir: home.path }).show("nemotron").catch((e) => e);
    assert.ok(error instanceof ModelNotFoundError);
    assert.match(error.hint ?? "", /lmstrix\.list\(\)/);
    assert.doesNotMatch(error.hint ?? "", /"lmstrix /);
  });
  await t.step("a home that is not LM Studio's: pass { lmstudioDir }", () => {
    const lmstrix = new LMStrix({ lmstudioDir: `${home.path}/nope` });
    assert.throws(
      () => lmstrix.paths,
      (e: ModelNotFoundError) => /\{ lmstudioDir \}/.test(e.hint ?? ""),
    );
  });
  await t.step("the guarded engine is still an LMStrix", () => {
    const lmstrix = new LMStrix({ lmstudioDir: home.path });
    assert.ok(lmstrix instanceof LMStrix);
    assert.equal(lmstrix.constructor, LMStrix);
  });
  await t.step("the CLI keeps its flags", async () => {
    const run = await runCli(["scan", "--server", server], { home: home.path });
    assert.equal(run.code, 3);
    assert.match(run.stderr, /^hint: .*pass --server$/m);
  });
});

Deno.test("a program missing several permissions is told them all at once", async (t) => {
  await using home = await tempHome();
  const script = new URL("./support/library_permissions.ts", import.meta.url).pathname;
  for (
    const [method, expected] of [
      ["scan", /read environment variables, read ".*", write ".*", connect to LM Studio/],
      ["list", /read environment variables, read "[^"]*"$/],
    ] as const
  ) {
    await t.step(`${method} with no permission`, async () => {
      const output = await new Deno.Command("deno", {
        args: ["run", script, method, home.path, "ws://127.0.0.1:1"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const result = JSON.parse(new TextDecoder().decode(output.stdout));
      assert.equal(result.error?.class, "UsageError", JSON.stringify(result));
      assert.match(result.error.message, expected);
    });
  }
});

/**
 * One rule for the LM Studio home, however it is found (`--lmstudio-dir`, `LMSTRIX_LMSTUDIO_DIR`
 * or the usual places): a home that does not exist or does not look like LM Studio's is a usage
 * error (exit 2) with a hint, and nothing is created outside a real home.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type CliRun, runCli, tempHome } from "./support/cli.ts";

/** Deno's cache as this process uses it, so that a run with another HOME finds its packages. */
async function denoDir(): Promise<string> {
  const info = await new Deno.Command("deno", { args: ["info", "--json"] }).output();
  return JSON.parse(new TextDecoder().decode(info.stdout)).denoDir;
}

/** Everything under `dir`, as relative paths. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    out.push(entry.name);
    if (entry.isDirectory) {
      out.push(...(await tree(join(dir, entry.name))).map((p) => join(entry.name, p)));
    }
  }
  return out.sort();
}

Deno.test("the default LM Studio home follows the flag's rule: missing or foreign is exit 2, nothing created", async (t) => {
  await using user = await tempHome(); // stands for the user's home directory, HOME
  const env = {
    HOME: user.path,
    DENO_DIR: await denoDir(),
    COLUMNS: "80",
    LMSTRIX_LMSTUDIO_DIR: "",
  };
  const run = async (args: string[]): Promise<CliRun> => {
    const result = await runCli([...args, "--server", "ws://127.0.0.1:1"], { home: "", env });
    for (const line of result.stderr.split("\n")) assert.ok(line.length < 80, line);
    // Messages wrap at 80 columns; the checks read them unwrapped.
    return { ...result, stderr: result.stderr.replace(/\n {2}/g, " ") };
  };
  const commands = [["scan"], ["list"], ["status"], ["test", "--all"], ["apply", "--all"]];

  await t.step(
    "no LM Studio on this machine: every command says so, and creates nothing",
    async () => {
      for (const command of commands) {
        const result = await run(command);
        assert.equal(result.code, 2, `${command.join(" ")}: ${result.stderr}`);
        assert.match(
          result.stderr,
          /^error: No LM Studio home found: ".*\.lmstudio" does not exist/m,
        );
        assert.match(result.stderr, /^hint: start LM Studio once .*--lmstudio-dir/m);
        assert.equal(result.stdout, "");
      }
      assert.deepEqual(await tree(user.path), [], "nothing was created in the user's home");
    },
  );

  await t.step(
    "a ~/.lmstudio that is not LM Studio's is refused as --lmstudio-dir would be",
    async () => {
      await Deno.mkdir(join(user.path, ".lmstudio", "my-notes"), { recursive: true });
      for (const command of commands) {
        const result = await run(command);
        assert.equal(result.code, 2, `${command.join(" ")}: ${result.stderr}`);
        assert.match(result.stderr, /^error: ".*\.lmstudio" does not look like an LM Studio home/m);
        assert.match(result.stderr, /^hint: .*--lmstudio-dir/m);
        const flagged = await run([...command, "--lmstudio-dir", join(user.path, ".lmstudio")]);
        assert.equal(flagged.code, 2);
        assert.equal(
          flagged.stderr.split("\n")[0],
          result.stderr.split("\n")[0],
          "the same message with the flag",
        );
      }
      assert.deepEqual(await tree(user.path), [".lmstudio", ".lmstudio/my-notes"]);
    },
  );

  await t.step("a real LM Studio home, found by LM Studio's pointer file, is used", async () => {
    const real = join(user.path, "elsewhere", "lmstudio");
    await Deno.mkdir(join(real, "models"), { recursive: true });
    await Deno.writeTextFile(join(user.path, ".lmstudio-home-pointer"), real + "\n");
    const result = await run(["list"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /registry is empty/);
  });
});

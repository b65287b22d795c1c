/**
 * The product's permission flags (`scripts/permissions.flags`) are scoped: `--allow-env` names the
 * variables LMStrix and its libraries read, `--allow-sys` the calls it makes. A read outside them
 * fails with NotCapable, so these tests find every read: in the sources, and by running the CLI
 * with the variables set that send the colour libraries down their longest path.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ENV_VARIABLES, LIBRARY_ENV_VARIABLES, SYS_CALLS } from "../src/permissions.ts";
import { PERMISSION_FLAGS, runCliAgainst, tempHome } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** The values of a flag `--allow-<name>=a,b`; undefined when it is given whole or not at all. */
function scoped(name: string): string[] | undefined {
  const flag = PERMISSION_FLAGS.find((f) => f.startsWith(`--allow-${name}=`));
  return flag?.slice(`--allow-${name}=`.length).split(",");
}

/** Every string literal passed to an environment read in the product's sources. */
async function envNamesRead(): Promise<Set<string>> {
  const names = new Set<string>();
  const files = ["main.ts", "mod.ts"];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(join(ROOT, dir))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".ts")) files.push(path);
    }
  };
  await walk("src");
  for (const file of files) {
    const text = await Deno.readTextFile(join(ROOT, file));
    for (
      const match of text.matchAll(/\b(?:env|#env|Deno\.env\.(?:get|set|has))\(\s*"([A-Z_0-9]+)"/g)
    ) {
      names.add(match[1]!);
    }
  }
  return names;
}

Deno.test("--allow-env and --allow-sys are scoped to what lmstrix and its libraries use", async (t) => {
  await t.step("--allow-env names exactly the variables, LMSTRIX_* as one", () => {
    const env = scoped("env");
    assert.ok(env !== undefined, "--allow-env is granted whole");
    const own = ENV_VARIABLES.filter((v) => !v.startsWith("LMSTRIX_"));
    assert.deepEqual(new Set(env), new Set(["LMSTRIX_*", ...own, ...LIBRARY_ENV_VARIABLES]));
  });
  await t.step("every variable the sources read is in the list", async () => {
    for (const name of await envNamesRead()) {
      assert.ok(ENV_VARIABLES.includes(name), `"${name}" is read but not in ENV_VARIABLES`);
    }
  });
  await t.step("--allow-sys names exactly the calls", () => {
    assert.deepEqual(scoped("sys"), [...SYS_CALLS]);
  });
});

Deno.test("with the colour and CI variables set, scan, list and show run under the scoped flags", async () => {
  // FORCE_COLOR makes chalk's and @colors' terminal checks read every variable they know even
  // without a terminal; CI sends them on to the CI names.
  const env = {
    FORCE_COLOR: "1",
    CI: "1",
    TERM: "xterm-256color",
    COLORTERM: "truecolor",
    TERM_PROGRAM: "iTerm.app",
    TERM_PROGRAM_VERSION: "3.4",
    TEAMCITY_VERSION: "9.1",
    NODE_ENV: "production",
    COLUMNS: "100",
  };
  await using home = await tempHome();
  await withEmulator([testProfile("tiny")], async (emulator) => {
    for (const args of [["scan"], ["list"], ["show", "tiny"], ["status"]]) {
      const run = await runCliAgainst(emulator.url, home.path, args, env);
      assert.equal(run.code, 0, `${args}: ${run.stderr}`);
      assert.doesNotMatch(run.stderr, /NotCapable|Requires (env|sys) access/, args.join(" "));
    }
  });
});

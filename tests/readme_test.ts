/**
 * The README a person reads in five minutes: under 300 lines, no line over 100 columns outside
 * code blocks, the two commands, the docs it links existing; its example outputs (and those of
 * docs/usage.md) are what the code prints on the demo fleet today; its cron recipe uses the
 * installed command and sends both commands' output to the log.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  differingExamples,
  EXAMPLE_FILES,
  readmeExamples,
  renderExamples,
} from "../scripts/readme/examples.ts";
import { PERMISSION_FLAGS } from "./support/cli.ts";

const ROOT = new URL("../", import.meta.url);
const readme = await Deno.readTextFile(new URL("README.md", ROOT));

/** The README's lines outside fenced code blocks. */
function prose(text: string): string[] {
  let fenced = false;
  return text.split("\n").filter((line) => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      return false;
    }
    return !fenced;
  });
}

Deno.test("the README is short, within 100 columns, and shows the two commands", () => {
  const lines = readme.trimEnd().split("\n");
  assert.ok(lines.length < 300, `${lines.length} lines`);
  for (const line of prose(readme)) assert.ok(line.length <= 100, `${line.length}: ${line}`);
  assert.match(readme, /^deno task demo +#/m);
  assert.match(readme, /^deno task test +#/m);
  assert.match(readme, /<!-- bench-summary:start -->[\s\S]+<!-- bench-summary:end -->/);
  assert.match(readme, /lmstudioDir/, "the library's home option is named");
  assert.match(readme, /releases\/download\/v<version>\/lmstrix-<target>/);
});

Deno.test("every docs/ page the README links exists", async () => {
  const links = [...readme.matchAll(/\]\((docs\/[^)#]+)\)/g)].map((m) => m[1]!);
  assert.ok(links.length >= 5);
  for (const link of new Set(links)) await Deno.stat(new URL(link, ROOT));
});

Deno.test("the README's examples are what the code prints on the demo fleet", async () => {
  const names = [...readmeExamples(readme).keys()];
  assert.ok(names.length >= 6, names.join(", "));
  const texts = await Promise.all(EXAMPLE_FILES.map((file) => Deno.readTextFile(file)));
  const differ = differingExamples(texts, await renderExamples());
  assert.deepEqual(differ, [], "run: deno task readme:examples --write");
});

Deno.test("the cron recipe runs the installed command and logs both commands' output", async () => {
  const cron = /^```cron\n([\s\S]*?)\n```/m.exec(readme)?.[1];
  assert.ok(cron !== undefined, "a cron block");
  const line = cron.split("\n").find((l) => !l.startsWith("#"))!;
  // `{ a && b; } >> log 2>&1`: one redirect for both commands, stdout and stderr.
  const group = /^[\d*\s]+\{ (.+); \} >> "[^"]+" 2>&1$/.exec(line);
  assert.ok(group, line);
  const commands = group[1]!.split(" && ");
  assert.equal(commands.length, 2);
  for (const command of commands) {
    assert.match(command, /^(\$HOME\/\.deno\/bin\/lmstrix|deno task -q start) /);
    assert.match(command, / --quiet\b/);
  }
  // What `deno task -q start` leaves in a log: the program's output, no "Task start" line.
  const run = await new Deno.Command("deno", {
    args: ["task", "-q", "start", "--version"],
    cwd: ROOT.pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(run.code, 0);
  assert.equal(new TextDecoder().decode(run.stderr), "");
  // The install line in the README uses the permission flags the tests run the CLI with.
  assert.match(
    readme,
    /deno install -g -n lmstrix --config "\$PWD\/deno\.json" \$\(cat scripts\/permissions\.flags\)/,
  );
  assert.ok(PERMISSION_FLAGS.length > 0);
});

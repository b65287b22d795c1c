/**
 * Builds the release binaries: `dist/lmstrix-<target>` (`.exe` on Windows) for every target in
 * {@linkcode TARGETS}, run by `deno task compile:all`.
 *
 * Each binary gets the permission flags of `scripts/permissions.flags`, the one file that also
 * feeds `deno task start` and `deno task compile`, so a binary can do exactly what
 * `deno task start` can. The other arguments are those of `deno task compile`, plus `--target`.
 * Cross-compiling downloads Deno's runtime for each target, so this needs the network.
 *
 * Usage: `deno task compile:all [--dry-run]`. With `--dry-run` it builds nothing and prints the
 * commands it would run as one JSON document, `{ "commands": [["deno", "compile", ...], ...] }`.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** The targets a release ships, as `deno compile --target` names them. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

/** A target of {@linkcode TARGETS}. */
export type Target = typeof TARGETS[number];

/** The repository root: the directory of deno.json. */
const ROOT = new URL("../", import.meta.url);

/** The one definition of the permission flags, relative to the repository root. */
export const PERMISSIONS_FILE = "scripts/permissions.flags";

/**
 * Reads the permission flags as `deno task` passes them: the words of
 * `$(cat scripts/permissions.flags)`, split on white space.
 */
export async function readPermissionFlags(
  file: string | URL = new URL(PERMISSIONS_FILE, ROOT),
): Promise<string[]> {
  const text = await Deno.readTextFile(file);
  return text.split(/\s+/).filter((word) => word !== "");
}

/** Where the binary for `target` goes, relative to the repository root. */
export function outputPath(target: Target): string {
  return `dist/lmstrix-${target}${target.includes("windows") ? ".exe" : ""}`;
}

/** The `deno` arguments that build the binary for `target` with the permission `flags`. */
export function compileArgs(target: Target, flags: readonly string[]): string[] {
  return ["compile", ...flags, "--target", target, "--output", outputPath(target), "main.ts"];
}

async function main(args: string[]): Promise<number> {
  const unknown = args.filter((arg) => arg !== "--dry-run");
  if (unknown.length > 0) {
    console.error(`error: Unknown argument "${unknown[0]}"`);
    console.error("hint: usage is deno task compile:all [--dry-run]");
    return 2;
  }
  const flags = await readPermissionFlags();
  const plan = TARGETS.map((target) => ({ target, args: compileArgs(target, flags) }));

  if (args.includes("--dry-run")) {
    console.log(JSON.stringify({ commands: plan.map((step) => ["deno", ...step.args]) }, null, 2));
    return 0;
  }

  const cwd = fileURLToPath(ROOT);
  for (const [index, step] of plan.entries()) {
    console.error(`[${index + 1}/${plan.length}] ${step.target}`);
    const { code } = await new Deno.Command("deno", {
      args: step.args,
      cwd,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) {
      console.error(`error: Building "${outputPath(step.target)}" failed (deno exited ${code})`);
      console.error(
        "hint: cross-compiling downloads Deno's runtime for the target: check the network",
      );
      return 1;
    }
  }
  for (const step of plan) {
    const file = outputPath(step.target);
    const { size } = await Deno.stat(new URL(file, ROOT));
    console.error(`${file}  ${(size / 2 ** 20).toFixed(1)} MiB`);
  }
  return 0;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}

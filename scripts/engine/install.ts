/**
 * Installs node-llama-cpp (pinned) for the engine's Node worker, CPU build only.
 *
 * `npm install --omit=optional` with the platform's prebuilt package named explicitly: the CPU
 * binary (`@node-llama-cpp/linux-x64`, 29 MB) and none of the CUDA or Vulkan builds (about
 * 540 MB) that Deno's own npm resolution would fetch. The product never reaches this file: only
 * `deno task engine`, its tests and the bench do.
 *
 * @module
 */

import { join } from "node:path";

/** The pinned version (newer releases may not install here). */
export const NODE_LLAMA_CPP = "3.21.1";

/** The prebuilt CPU package for this platform. */
function platformPackage(): string {
  const arch = Deno.build.arch === "aarch64" ? "arm64" : "x64";
  if (Deno.build.os === "linux") return `@node-llama-cpp/linux-${arch}`;
  if (Deno.build.os === "darwin") {
    return arch === "arm64" ? "@node-llama-cpp/mac-arm64-metal" : "@node-llama-cpp/mac-x64";
  }
  if (Deno.build.os === "windows") return `@node-llama-cpp/win-${arch}`;
  throw new Error(`No prebuilt llama.cpp for ${Deno.build.os}-${Deno.build.arch}`);
}

/** Where the packages go: `$LMSTRIX_ENGINE_DEPS`, else the user's cache folder. */
export function depsDir(): string {
  const explicit = Deno.env.get("LMSTRIX_ENGINE_DEPS");
  if (explicit) return explicit;
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? ".", ".cache");
  return join(cache, "lmstrix", `engine-node-llama-cpp-${NODE_LLAMA_CPP}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Returns the `node_modules` folder holding node-llama-cpp, installing it first if needed.
 * Concurrent callers each install into a folder of their own and rename it into place; the
 * first rename wins.
 */
export async function ensureNodeLlamaCpp(log: (line: string) => void): Promise<string> {
  const dir = depsDir();
  const modules = join(dir, "node_modules");
  if (await exists(join(modules, "node-llama-cpp", "package.json"))) return modules;
  const staging = `${dir}.staging-${Deno.pid}`;
  await Deno.mkdir(staging, { recursive: true });
  log(`installing node-llama-cpp@${NODE_LLAMA_CPP} (CPU build only) into ${dir}`);
  const npm = Deno.build.os === "windows" ? "npm.cmd" : "npm";
  const result = await new Deno.Command(npm, {
    args: [
      "install",
      "--prefix",
      staging,
      "--no-save",
      "--no-package-lock",
      "--omit=optional",
      "--ignore-scripts",
      "--no-audit",
      "--no-fund",
      `node-llama-cpp@${NODE_LLAMA_CPP}`,
      `${platformPackage()}@${NODE_LLAMA_CPP}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!result.success) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    throw new Error(`npm install failed: ${new TextDecoder().decode(result.stderr).trim()}`);
  }
  try {
    await Deno.rename(staging, dir);
  } catch (error) {
    // Another process installed it first.
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    if (!(await exists(join(modules, "node-llama-cpp", "package.json")))) throw error;
  }
  return modules;
}

/**
 * Reading LM Studio's per-model config files and the folders around them, for `apply` and
 * `apply --undo`: where a model's file lives, its bytes and permission bits, whether it changed,
 * and the folders LMStrix made for it.
 *
 * @module
 */

import { dirname, isAbsolute, join, relative } from "node:path";
import { errorText } from "../errors.ts";
import { TEMP_FILE_PATTERN } from "../registry/atomic_write.ts";
import { linkBelow } from "../registry/no_follow.ts";
import { type AppliedManifest, type ApplyPaths, isCreatedDirName } from "./applied_store.ts";

/** The config file of the model at `modelPath`, or null when the path would leave the directory. */
export function configFileFor(configDir: string, modelPath: string): string | null {
  const parts = modelPath.split(/[\\/]/);
  if (
    modelPath === "" || isAbsolute(modelPath) || modelPath.includes("\0") ||
    parts.some((part) => part === ".." || part === "") || /^[A-Za-z]:/.test(modelPath)
  ) {
    return null;
  }
  return join(configDir, ...parts) + ".json";
}

/** A config file as read: its bytes (null when it does not exist) and mode, or why it can't be. */
export type ReadConfig = { bytes: Uint8Array | null; mode: number | null } | { problem: string };

/**
 * Reads a config file below `configDir`; a missing file is not a problem, an unreadable one is.
 * So is a file that is, or lies in a folder that is, a symbolic link below `configDir` (a write
 * would go elsewhere, or turn the link into a file), and a read-only file (someone made it so
 * that nothing changes it; a rename would replace it all the same).
 */
export async function readConfig(file: string, configDir: string): Promise<ReadConfig> {
  try {
    const link = await linkBelow(configDir, file);
    if (link !== null) {
      const what = link === file ? "it is" : `its folder "${link}" is`;
      return { problem: `${what} a symbolic link; lmstrix does not write through links` };
    }
    const bytes = await Deno.readFile(file);
    const mode = (await Deno.lstat(file)).mode;
    if (mode !== null && (mode & 0o222) === 0) {
      return { problem: "it is read-only; lmstrix leaves it so" };
    }
    return { bytes, mode: mode === null ? null : mode & 0o7777 };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { bytes: null, mode: null };
    return { problem: `cannot read it: ${fileErrorText(error)}` };
  }
}

/** Whether two byte strings are the same. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The bytes as strict UTF-8 text, or null when they are not. */
export function decode(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** The directories from `configDir` down to `dir` that do not exist, outermost first. */
export function missingDirs(configDir: string, dir: string): string[] {
  const missing: string[] = [];
  let current = dir;
  for (;;) {
    try {
      Deno.statSync(current);
      break;
    } catch {
      missing.unshift(relative(configDir, current));
    }
    const parent = dirname(current);
    if (parent === current) break;
    current = parent;
  }
  return missing;
}

/**
 * Removes the folders LMStrix created that are empty now, deepest first, and forgets them; a
 * folder that holds something (another model's config, a file of the user's) stays listed until
 * a later undo empties it.
 */
export async function pruneCreatedDirs(
  where: ApplyPaths,
  manifest: AppliedManifest,
): Promise<void> {
  const depth = (dir: string) => join(where.configDir, dir).split(/[\\/]/).length;
  const deepestFirst = [...manifest.createdDirs].sort((a, b) => depth(b) - depth(a));
  for (const dir of deepestFirst) {
    // A name edited in by hand ("../../x") or a folder become a link is not LMStrix's to remove.
    if (!isCreatedDirName(dir)) continue;
    const base = dirname(dirname(where.configDir)); // The LM Studio home.
    if (await linkBelow(base, join(where.configDir, dir)) !== null) continue;
    try {
      await Deno.remove(join(where.configDir, dir));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) continue;
    }
    manifest.createdDirs = manifest.createdDirs.filter((d) => d !== dir);
  }
}

/**
 * Removes the temp files a killed run left in `dir` (a folder below `configDir`, not reached
 * through a link), once per run (`done` remembers the folders). Call only under the writer lock:
 * then no other run is writing there.
 */
export async function removeStaleTemps(
  configDir: string,
  dir: string,
  done: Set<string>,
): Promise<void> {
  if (done.has(dir)) return;
  done.add(dir);
  try {
    if (await linkBelow(configDir, dir) !== null) return;
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && TEMP_FILE_PATTERN.test(entry.name)) {
        await Deno.remove(join(dir, entry.name)).catch(() => {});
      }
    }
  } catch {
    // A folder that is not there (yet) holds nothing to remove.
  }
}

/** A file error as a short phrase for an entry's reason. */
export function fileErrorText(error: unknown): string {
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  // ENAMETOOLONG: 36 on Linux, 63 on macOS and the BSDs, 206 on Windows.
  if (error instanceof Error && /name too long|os error (36|63|206)\)/i.test(error.message)) {
    return "its name is too long for the file system (shorten the model's folder or file name)";
  }
  return errorText(error);
}

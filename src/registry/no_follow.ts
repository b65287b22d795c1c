/**
 * Opening the files LMStrix writes without following symbolic links.
 *
 * The lock file and the attempt logs live in a directory other users or programs may be able to
 * write to (a shared LM Studio home): a link planted there (`lmstrix.lock` -> `~/.ssh/config`)
 * would make LMStrix truncate or append to the file it points to. Deno cannot open with
 * `O_NOFOLLOW`, so the path is checked with `lstat` before opening, and the opened file is checked
 * to be the one the path names afterwards (same device and inode, still not a link). Temp files
 * need no check: they are created with `createNew` (`O_EXCL`), which refuses a link.
 *
 * @module
 */

import { join, relative, sep } from "node:path";
import { RegistryError } from "../errors.ts";

/** Opens `path` like `Deno.open`, but refuses it when it is (or becomes) a symbolic link. */
export async function openNoFollow(path: string, options: Deno.OpenOptions): Promise<Deno.FsFile> {
  if ((await lstatOrNull(path))?.isSymlink) throw linkError(path);
  const file = await Deno.open(path, options);
  try {
    const opened = await file.stat();
    const named = await Deno.lstat(path);
    const sameFile = opened.ino === null || named.ino === null ||
      (opened.ino === named.ino && opened.dev === named.dev);
    if (named.isSymlink || !sameFile) throw linkError(path);
  } catch (error) {
    file.close();
    throw error;
  }
  return file;
}

/**
 * The first of `path` and the folders between `base` and it that is a symbolic link, or null. A
 * link at or above `base` is the user's to make (a home moved to another disk); below it, every
 * folder and file is LMStrix's or LM Studio's, and a link there would take a write elsewhere.
 */
export async function linkBelow(base: string, path: string): Promise<string | null> {
  const rel = relative(base, path);
  if (rel === "" || rel.startsWith("..")) return null;
  let at = base;
  for (const part of rel.split(sep)) {
    at = join(at, part);
    const info = await lstatOrNull(at);
    if (info === null) return null; // Nothing below a missing folder exists either.
    if (info.isSymlink) return at;
  }
  return null;
}

/** Throws the link error when `dir` (LMStrix's own folder, below `base`) is or passes a link. */
export async function refuseLinkBelow(base: string, dir: string): Promise<void> {
  const link = await linkBelow(base, dir);
  if (link !== null) throw linkError(link);
}

function linkError(path: string): RegistryError {
  return new RegistryError(
    `Cannot write "${path}": it is a symbolic link, and lmstrix does not follow links for the ` +
      "files it writes",
    { path, hint: "remove the link (lmstrix creates the file itself), then run the command again" },
  );
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

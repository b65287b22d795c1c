/**
 * Atomic file replacement, shared by everything LMStrix writes that a reader must never see half
 * of: the registry, and LM Studio's per-model config files that `apply` edits.
 *
 * The bytes go to a temp file in the same directory (a rename is atomic only within one file
 * system), are fsynced, and the temp file is renamed over the target; the directory is then
 * synced so the rename survives a power cut. A reader sees the old file or the new one.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { writeAll } from "../write_all.ts";

/**
 * The names of {@linkcode writeFileAtomic}'s temp files. One left behind is a write a killed run
 * did not finish: whoever holds the writer lock may remove it.
 */
export const TEMP_FILE_PATTERN = /^\.lmstrix-\d+-[0-9a-f]{8}\.tmp$/;

/** Options of {@linkcode writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /** Permission bits of the new file (ignored on Windows); default: the umask's. */
  mode?: number | undefined;
  /**
   * Called with the new bytes synced, just before the rename; when it throws, nothing is
   * replaced and the error is the call's (a last check that the target is still as expected).
   */
  beforeRename?: (() => Promise<void>) | undefined;
}

/**
 * Replaces `file` with `data` atomically. The directory must exist. On failure the temp file is
 * removed and the old file is left as it was.
 */
export async function writeFileAtomic(
  file: string,
  data: Uint8Array | string,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  // A short name beside the file: a name near the file system's limit still gets a temp file.
  const temp = join(dirname(file), `.lmstrix-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}.tmp`);
  try {
    const handle = await Deno.open(temp, { write: true, createNew: true });
    try {
      await writeAll(handle, bytes);
      await handle.sync();
    } finally {
      handle.close();
    }
    if (options.mode !== undefined && Deno.build.os !== "windows") {
      await Deno.chmod(temp, options.mode);
    }
    await options.beforeRename?.();
    await Deno.rename(temp, file);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  await syncDirectory(dirname(file));
}

/** Makes a rename durable; not every platform lets a directory be opened, which is fine. */
export async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await Deno.open(dir, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  } catch {
    // Best effort: the data itself is already synced and renamed into place.
  }
}

/**
 * The writer lock: `<lmstudio-dir>/lmstrix/lmstrix.lock`, held while a command writes.
 *
 * It is an advisory OS lock (`Deno.FsFile.tryLock`), not the file's existence, so the kernel
 * drops it when the holder exits in any way, SIGKILL and crashes included: nothing stale is left
 * to clean up. The holder writes `{"pid", "startedAt"}` into the file for others to read, and
 * empties it on release. The file itself is never deleted: deleting a lock file lets two
 * processes lock two different files of the same name.
 *
 * On Windows the OS lock also blocks reading the file, so another process sees the lock as held
 * but cannot tell by whom (`pid` and `startedAt` are then null).
 *
 * @module
 */

import { LockHeldError } from "../errors.ts";
import type { LmstrixPaths } from "../paths.ts";
import { writeAll } from "../write_all.ts";
import { openNoFollow } from "./no_follow.ts";

/** Who holds the lock, as the holder wrote it; fields are null when they could not be read. */
export interface LockHolder {
  /** Process id of the holder. */
  pid: number | null;
  /** When the holder took the lock (ISO 8601). */
  startedAt: string | null;
}

/** A lock this process holds. Release it when done; exiting also releases it. */
export interface Lock {
  /** The lock file. */
  readonly path: string;
  /** This process's id, as written into the lock file. */
  readonly pid: number;
  /** When the lock was taken (ISO 8601). */
  readonly startedAt: string;
  /** Empties the lock file and releases the lock; calling it again does nothing. */
  release(): Promise<void>;
  /** Same as {@linkcode Lock.release}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of {@linkcode acquireLock}; the defaults are for production. */
export interface AcquireLockOptions {
  /** The process id written into the lock file (default: `Deno.pid`). */
  pid?: number;
  /** The clock for `startedAt` (default: `new Date()`). */
  now?: () => Date;
  /** Tries before giving up; a reader's brief probe can make one try fail (default: 4). */
  attempts?: number;
  /** Pause between tries in milliseconds (default: 50). */
  retryDelayMs?: number;
}

/**
 * Takes the writer lock without waiting for it. Creates the directory if needed. Throws
 * {@linkcode LockHeldError} with the holder's pid when another process (or another handle in
 * this one) holds it.
 */
export async function acquireLock(
  paths: Pick<LmstrixPaths, "root" | "lock">,
  options: AcquireLockOptions = {},
): Promise<Lock> {
  const attempts = Math.max(1, options.attempts ?? 4);
  const retryDelayMs = options.retryDelayMs ?? 50;
  await Deno.mkdir(paths.root, { recursive: true });
  const file = await openNoFollow(paths.lock, { read: true, write: true, create: true });
  let locked = false;
  try {
    // `readLockHolder` probes with a momentary shared lock; retrying a few times keeps such a
    // probe from passing for a real holder.
    for (let attempt = 1; attempt <= attempts && !locked; attempt++) {
      if (attempt > 1) await delay(retryDelayMs);
      locked = await file.tryLock(true);
    }
    if (!locked) {
      const holder = await readHolderContent(paths.lock);
      throw new LockHeldError(holder?.pid ?? null, holder?.startedAt ?? null, paths.lock);
    }
    const pid = options.pid ?? Deno.pid;
    const startedAt = (options.now ?? (() => new Date()))().toISOString();
    await writeContent(file, JSON.stringify({ pid, startedAt }) + "\n");
    return openLock(paths.lock, file, pid, startedAt);
  } catch (error) {
    file.close();
    throw error;
  }
}

/**
 * Tells who holds the writer lock, or null when nobody does. It only reports a holder whose OS
 * lock is really held (a killed holder's leftover content does not count): it tries to take the
 * lock shared and, when that works, releases it at once.
 */
export async function readLockHolder(
  paths: Pick<LmstrixPaths, "lock">,
): Promise<LockHolder | null> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(paths.lock, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  try {
    if (await file.tryLock(false)) {
      await file.unlock();
      return null;
    }
  } finally {
    file.close();
  }
  return await readHolderContent(paths.lock) ?? { pid: null, startedAt: null };
}

function openLock(path: string, file: Deno.FsFile, pid: number, startedAt: string): Lock {
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    try {
      // Empty the file while still holding the lock, so no reader sees a pid that is leaving.
      await file.truncate(0);
      await file.unlock();
    } finally {
      file.close();
    }
  };
  return { path, pid, startedAt, release, [Symbol.asyncDispose]: release };
}

/**
 * Reads what the holder wrote. A holder writes right after it takes the lock, so an empty or
 * half-written file is read again a few times before giving up.
 */
async function readHolderContent(path: string): Promise<LockHolder | null> {
  for (let attempt = 0; attempt < 5; attempt++) {
    if (attempt > 0) await delay(20);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      return null; // Gone, or unreadable while locked (Windows).
    }
    const holder = parseHolder(text);
    if (holder !== null) return holder;
  }
  return null;
}

function parseHolder(text: string): LockHolder | null {
  try {
    const data: unknown = JSON.parse(text);
    if (typeof data !== "object" || data === null) return null;
    const { pid, startedAt } = data as Record<string, unknown>;
    if (typeof pid !== "number" || !Number.isSafeInteger(pid)) return null;
    return { pid, startedAt: typeof startedAt === "string" ? startedAt : null };
  } catch {
    return null;
  }
}

async function writeContent(file: Deno.FsFile, text: string): Promise<void> {
  await file.truncate(0);
  await file.seek(0, Deno.SeekMode.Start);
  await writeAll(file, new TextEncoder().encode(text));
  await file.syncData();
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

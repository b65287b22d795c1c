/**
 * File-system failures told as what failed and where, instead of "Unexpected failure": a home
 * LMStrix may not write to, a full disk, a path through a file.
 *
 * Deno's error messages end with the operation and the path (`Permission denied (os error 13):
 * mkdir '/x/lmstrix'`); the path is taken from there.
 *
 * @module
 */

import { ExitCode } from "../exit_codes.ts";

/** An error message, its hint and its exit code. */
export interface FileProblem {
  message: string;
  hint: string;
  exitCode: number;
}

/**
 * Describes `error` when it is a file-system failure this module knows, else returns null. A
 * home LMStrix cannot use (no permission, read-only, a path through a file) is bad input (exit 2);
 * a full disk is not the user's input, and leaves the run as failed (exit 1).
 */
export function describeFileError(error: unknown): FileProblem | null {
  if (!(error instanceof Error)) return null;
  const text = error.message;
  const where = /:\s*(\w+)\s+'([^']*)'/.exec(text);
  const path = where ? `"${where[2]}"` : "a file of the LM Studio home";
  const code = (error as { code?: unknown }).code;
  if (code === "ENOSPC" || /os error 28\b|no space left/i.test(text)) {
    return {
      message: `Cannot write ${path}: the disk is full`,
      hint: "free some space, then run the same command again (saved progress is kept)",
      exitCode: ExitCode.someFailed,
    };
  }
  if (error instanceof Deno.errors.PermissionDenied || code === "EACCES" || code === "EPERM") {
    return {
      message: `Cannot use ${path}: permission denied`,
      hint: "check the permissions of the LM Studio home, or pass another --lmstudio-dir",
      exitCode: ExitCode.usage,
    };
  }
  if (code === "EROFS" || /os error 30\b|read-only file system/i.test(text)) {
    return {
      message: `Cannot write ${path}: the file system is read-only`,
      hint: "pass an LM Studio home on a writable disk with --lmstudio-dir",
      exitCode: ExitCode.usage,
    };
  }
  if (error instanceof Deno.errors.NotADirectory || code === "ENOTDIR") {
    return {
      message: `Cannot use ${path}: a part of that path is a file, not a directory`,
      hint: "check the --lmstudio-dir in use and what is in its lmstrix/ folder",
      exitCode: ExitCode.usage,
    };
  }
  if (error instanceof Deno.errors.AlreadyExists && where?.[1] === "mkdir") {
    return {
      message: `Cannot create the directory ${path}: a file of that name is in the way`,
      hint: "move that file aside, then run the same command again",
      exitCode: ExitCode.usage,
    };
  }
  return null;
}

/** A class of error, as `instanceof` takes it (`Deno.errors.NotFound`). */
export type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * Why a read or write of a path the user named failed, in the words `reasons` gives for the
 * first class `error` belongs to; null when it belongs to none (an unexpected failure).
 */
export function pathFailure(
  error: unknown,
  reasons: ReadonlyArray<readonly [ErrorClass, string]>,
): string | null {
  return reasons.find(([kind]) => error instanceof kind)?.[1] ?? null;
}

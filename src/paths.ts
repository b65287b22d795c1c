/**
 * Where LMStrix finds LM Studio's home directory and where it keeps its own files there.
 *
 * The LM Studio home is, in order: the `--lmstudio-dir` flag, the `LMSTRIX_LMSTUDIO_DIR`
 * environment variable, then the first directory that exists of: the path written in
 * `~/.lmstudio-home-pointer`, `~/.lmstudio`, `~/.cache/lm-studio`,
 * `~/Library/Application Support/LM Studio`, `/Users/Shared/lmstudio` (on Windows: the pointer,
 * then `%USERPROFILE%\.lmstudio`). When none exists, it is `~/.lmstudio`, the directory current LM
 * Studio versions create.
 *
 * One rule, whichever way the home was found: it must be an existing directory that looks like LM
 * Studio's ({@linkcode checkLmstudioHome}); a misspelled path, or a machine without LM Studio, is
 * refused rather than created and filled. A relative one is resolved against the directory the user ran the command in, which
 * under `deno task` is `INIT_CWD` (the task itself runs in the project's root).
 *
 * Side effects (environment, home directory, file checks) are injected, with production defaults.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join, posix, win32 } from "node:path";
import { UsageError } from "./errors.ts";
import { fnv1a32 } from "./ids.ts";

/** What {@linkcode resolveLmstudioDir} looks at; every field has a production default. */
export interface ResolveLmstudioDirOptions {
  /** The value of `--lmstudio-dir`, if given. */
  flag?: string | undefined;
  /** Reads an environment variable (default: `Deno.env.get`). */
  env?: (name: string) => string | undefined;
  /** The user's home directory (default: `HOME`, or `USERPROFILE` on Windows). */
  homeDir?: string | undefined;
  /** The operating system, as in `Deno.build.os` (default: `Deno.build.os`). */
  platform?: string;
  /** Whether a directory exists at the path (default: a `Deno.statSync` check). */
  exists?: (path: string) => boolean;
  /** Reads a text file, or returns undefined when it cannot (default: `Deno.readTextFileSync`). */
  readTextFile?: (path: string) => string | undefined;
  /**
   * The directory relative paths are resolved against (default: `INIT_CWD` when `deno task`
   * set it, else `Deno.cwd()`).
   */
  cwd?: () => string;
}

/** The files LMStrix keeps under `<lmstudio-dir>/lmstrix/`, plus the lmsm.json it imports. */
export interface LmstrixPaths {
  /** The LM Studio home directory. */
  lmstudioDir: string;
  /** `<lmstudio-dir>/lmstrix`: everything LMStrix writes lives here. */
  root: string;
  /** `<root>/models.json`: the registry. */
  registry: string;
  /** `<root>/lmstrix.lock`: held while a command writes. */
  lock: string;
  /** `<root>/context_tests`: one attempt log per model. */
  logsDir: string;
  /** `<lmstudio-dir>/lmsm.json`: the older format, imported when no registry exists yet. */
  lmsm: string;
}

/** The environment variable that names the LM Studio home. */
export const LMSTUDIO_DIR_ENV = "LMSTRIX_LMSTUDIO_DIR";

/** The file in the home directory in which LM Studio writes where its home is. */
export const HOME_POINTER_FILE = ".lmstudio-home-pointer";

/**
 * Finds the LM Studio home directory (see the module doc for the order) as an absolute path.
 * Throws {@linkcode UsageError} when neither a flag, the environment variable nor a home
 * directory is available.
 */
export function resolveLmstudioDir(options: ResolveLmstudioDirOptions = {}): string {
  const platform = options.platform ?? Deno.build.os;
  const path = platform === "windows" ? win32 : posix;
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const exists = options.exists ?? directoryExists;
  const readTextFile = options.readTextFile ?? readTextFileOrUndefined;
  const homeDir = nonEmpty(options.homeDir) ??
    nonEmpty(platform === "windows" ? env("USERPROFILE") : env("HOME")) ??
    nonEmpty(env("HOME"));
  const cwd = options.cwd ?? (() => nonEmpty(env("INIT_CWD")) ?? Deno.cwd());

  const absolute = (dir: string): string => {
    const expanded = homeDir !== undefined && (dir === "~" || /^~[\\/]/.test(dir))
      ? path.join(homeDir, dir.slice(1))
      : dir;
    return path.resolve(cwd(), expanded);
  };

  if (options.flag !== undefined && options.flag.trim() === "") {
    throw new UsageError("--lmstudio-dir is empty", {
      hint:
        "pass LM Studio's home directory with --lmstudio-dir (usually ~/.lmstudio), or leave the flag out",
    });
  }
  const explicit = nonEmpty(options.flag) ?? nonEmpty(env(LMSTUDIO_DIR_ENV));
  if (explicit !== undefined) return absolute(explicit);

  if (homeDir === undefined) {
    throw new UsageError("Cannot find the LM Studio home: the home directory is not set", {
      hint: `pass --lmstudio-dir or set ${LMSTUDIO_DIR_ENV}`,
    });
  }

  const candidates: string[] = [];
  // LM Studio writes its home into the pointer file; older versions left a trailing newline.
  const pointer = readTextFile(path.join(homeDir, HOME_POINTER_FILE))?.split(/\r?\n/)[0]?.trim();
  if (pointer) candidates.push(absolute(pointer));
  candidates.push(path.join(homeDir, ".lmstudio"));
  if (platform === "windows") {
    candidates.push(path.join(homeDir, ".cache", "lm-studio"));
  } else {
    candidates.push(
      path.join(homeDir, ".cache", "lm-studio"),
      path.join(homeDir, "Library", "Application Support", "LM Studio"),
      "/Users/Shared/lmstudio",
    );
  }
  return candidates.find((dir) => exists(dir)) ?? path.join(homeDir, ".lmstudio");
}

/**
 * What an LM Studio home holds; a directory with one of these (or an empty one, a home about to
 * be used) is taken as one.
 */
export const LMSTUDIO_HOME_MARKERS: readonly string[] = [
  "models",
  "hub",
  ".internal",
  "settings.json",
  "bin",
  "extensions",
  "conversations",
  "config-presets",
  "server-logs",
  "user-files",
  "lmsm.json",
  "lmstrix",
];

/** What {@linkcode checkLmstudioHome} looks at; production defaults use `Deno`. */
export interface CheckHomeOptions {
  /** The kind of thing at `path`: a directory, something else, or nothing. */
  kind?: (path: string) => "directory" | "other" | "missing";
  /** The names in the directory `path`. */
  entries?: (path: string) => string[];
}

/**
 * Throws {@linkcode UsageError} (exit 2, with a hint) unless `dir` is an existing directory that
 * is empty or holds something of LM Studio's (see {@linkcode LMSTUDIO_HOME_MARKERS}).
 */
export function checkLmstudioHome(dir: string, options: CheckHomeOptions = {}): void {
  const kind = (options.kind ?? kindOf)(dir);
  const hint = 'pass LM Studio\'s home with --lmstudio-dir (usually "~/.lmstudio"; in LM Studio, ' +
    "the models folder's parent)";
  if (kind === "missing") {
    throw new UsageError(`The LM Studio home "${dir}" does not exist`, { hint });
  }
  if (kind === "other") {
    throw new UsageError(`The LM Studio home "${dir}" is not a directory`, { hint });
  }
  const names = (options.entries ?? entriesOf)(dir);
  if (names.length > 0 && !names.some((name) => LMSTUDIO_HOME_MARKERS.includes(name))) {
    throw new UsageError(
      `"${dir}" does not look like an LM Studio home: it has none of ` +
        `${LMSTUDIO_HOME_MARKERS.slice(0, 4).join(", ")}, ...`,
      { hint },
    );
  }
}

function kindOf(path: string): "directory" | "other" | "missing" {
  try {
    return Deno.statSync(path).isDirectory ? "directory" : "other";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    if (error instanceof Deno.errors.NotADirectory) return "missing";
    throw error;
  }
}

function entriesOf(path: string): string[] {
  return [...Deno.readDirSync(path)].map((entry) => entry.name);
}

/**
 * {@linkcode resolveLmstudioDir}, then {@linkcode checkLmstudioHome}, however the home was found:
 * LMStrix never creates its files outside a real LM Studio home. When no usual place exists, the
 * error says where it looked.
 */
export function resolveCheckedLmstudioDir(
  options: ResolveLmstudioDirOptions & { beforeCheck?: (dir: string) => void } = {},
): string {
  const dir = resolveLmstudioDir(options);
  options.beforeCheck?.(dir);
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const named = nonEmpty(options.flag) ?? nonEmpty(env(LMSTUDIO_DIR_ENV));
  try {
    checkLmstudioHome(dir);
  } catch (error) {
    if (
      named !== undefined || !(error instanceof UsageError) || !/does not exist/.test(error.message)
    ) {
      throw error;
    }
    throw new UsageError(
      `No LM Studio home found: "${dir}" does not exist, nor does LM Studio's pointer file or ` +
        "any other usual place",
      {
        hint: 'start LM Studio once (it creates its home, usually "~/.lmstudio"), or pass its ' +
          "home with --lmstudio-dir",
      },
    );
  }
  return dir;
}

/** The LMStrix file locations under the LM Studio home `lmstudioDir`. */
export function lmstrixPaths(lmstudioDir: string): LmstrixPaths {
  const root = join(lmstudioDir, "lmstrix");
  return {
    lmstudioDir,
    root,
    registry: join(root, "models.json"),
    lock: join(root, "lmstrix.lock"),
    logsDir: join(root, "context_tests"),
    lmsm: join(lmstudioDir, "lmsm.json"),
  };
}

/** The longest file-safe id kept in a log file name, so the name stays under 255 bytes. */
const MAX_SAFE_ID_LENGTH = 160;

/** Hex digits of SHA-256 kept in a file-safe id: 128 bits, so no two ids are found to clash. */
const SAFE_ID_HASH_DIGITS = 32;

/**
 * Turns a model id into a string that is safe as a file name, and distinct for distinct ids.
 *
 * An id of lower-case letters, digits, `.`, `_` and `-` (not only dots, not too long, not
 * ending like an older version's hashed name, `-` and 8 hex digits) is its own name. Any other id becomes its characters outside `A-Z a-z 0-9 . _ -` replaced with `_`, cut
 * to length, then `~` and 128 bits of the id's SHA-256. A plain name never holds `~` and every
 * other one does, so the two kinds never meet; two ids of the second kind meet only if SHA-256
 * does. (Older versions appended `-` and a 32-bit FNV hash, which a model could be named after:
 * {@linkcode legacyFileSafeModelId}, still read; no new name is an older hashed one.) Upper case is never a plain name, since
 * case-insensitive file systems would merge `Qwen` and `qwen`.
 */
export function fileSafeModelId(modelId: string): string {
  const plain = /^[a-z0-9._-]+$/.test(modelId) && !/^\.+$/.test(modelId) &&
    modelId.length <= MAX_SAFE_ID_LENGTH && !/-[0-9a-f]{8}$/.test(modelId);
  if (plain) return modelId;
  const safe = modelId.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, MAX_SAFE_ID_LENGTH);
  const hash = createHash("sha256").update(modelId, "utf8").digest("hex");
  return `${safe}~${hash.slice(0, SAFE_ID_HASH_DIGITS)}`;
}

/**
 * The file-safe id older versions used: characters other than `A-Z a-z 0-9 . _ -` became `_`,
 * and when that changed the id (or it had upper case, or was cut to length) `-` and an 8-digit
 * FNV-1a hash were appended. Not injective (`a/b` gave `a_b-3a8e75c1`, which is also a model id
 * of its own): read only, to find what older versions wrote, whose entries name their model.
 */
export function legacyFileSafeModelId(modelId: string): string {
  let safe = modelId.replace(/[^A-Za-z0-9._-]/g, "_");
  let changed = safe !== modelId || /[A-Z]/.test(modelId) || safe === "" || /^\.+$/.test(safe);
  if (safe.length > MAX_SAFE_ID_LENGTH) {
    safe = safe.slice(0, MAX_SAFE_ID_LENGTH);
    changed = true;
  }
  return changed ? `${safe}-${fnv1a32(modelId).toString(16).padStart(8, "0")}` : safe;
}

/** The attempt log of `modelId`: `<logsDir>/<file-safe id>_context_test.log`. */
export function logFileFor(paths: Pick<LmstrixPaths, "logsDir">, modelId: string): string {
  return join(paths.logsDir, `${fileSafeModelId(modelId)}_context_test.log`);
}

/**
 * Where an older version kept the attempt log of `modelId`, when that is not where this one
 * does: possibly shared with another model, so its entries are read only where they name it.
 */
export function legacyLogFileFor(
  paths: Pick<LmstrixPaths, "logsDir">,
  modelId: string,
): string | undefined {
  const legacy = join(paths.logsDir, `${legacyFileSafeModelId(modelId)}_context_test.log`);
  return legacy === logFileFor(paths, modelId) ? undefined : legacy;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value;
}

function directoryExists(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function readTextFileOrUndefined(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

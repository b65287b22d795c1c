/**
 * What `apply` changed in LM Studio's config files, and what was there before, so that
 * `apply --undo` can put it back byte for byte.
 *
 * `<lmstudio-dir>/lmstrix/applied.json` holds one entry per model LMStrix wrote a config file for:
 * whether the file existed before, where its exact old bytes are kept
 * (`<lmstudio-dir>/lmstrix/config_backups/`), the directories LMStrix created for it, and a
 * SHA-256 of the bytes LMStrix wrote, so that undo can tell whether someone changed the file since.
 * It is written atomically before each config file is changed, so that no change is ever made
 * that undo does not know about. A damaged or newer manifest is never overwritten.
 *
 * This file reads and writes the manifest only; it is cheap to load, since `list`, `show` and
 * `status` read it to say which models are applied.
 *
 * @module
 */

import { join } from "node:path";
import { errorText, RegistryError } from "../errors.ts";
import { isObject } from "../json.ts";
import type { LmstrixPaths } from "../paths.ts";
import { writeFileAtomic } from "../registry/atomic_write.ts";

/** The manifest schema this version reads and writes. */
export const APPLIED_SCHEMA_VERSION = 1;

/** Where `apply` keeps its state, and where LM Studio keeps the per-model configs. */
export interface ApplyPaths {
  /** `<lmstudio-dir>/lmstrix/applied.json`. */
  manifest: string;
  /** `<lmstudio-dir>/lmstrix/config_backups`: the exact bytes of files before the first apply. */
  backupsDir: string;
  /** `<lmstudio-dir>/.internal/user-concrete-model-default-config`. */
  configDir: string;
}

/** The apply paths under the LMStrix paths. */
export function applyPaths(paths: Pick<LmstrixPaths, "root" | "lmstudioDir">): ApplyPaths {
  return {
    manifest: join(paths.root, "applied.json"),
    backupsDir: join(paths.root, "config_backups"),
    configDir: join(paths.lmstudioDir, ".internal", "user-concrete-model-default-config"),
  };
}

/** One model's applied config. */
export interface AppliedEntry {
  /** The model's path in LM Studio, from which the config file's name comes. */
  modelPath: string;
  /** Whether a config file existed before LMStrix first wrote it. */
  existed: boolean;
  /** The backup's file name in the backups directory, when the file existed. */
  backup: string | null;
  /** Permission bits of the file before (null when it did not exist). */
  mode: number | null;
  /** SHA-256 (hex) of the file before, or null when there was none. */
  originalSha256: string | null;
  /** SHA-256 (hex) of the bytes LMStrix last wrote. */
  writtenSha256: string;
  /** The context length LMStrix last wrote. */
  contextLength: number;
  /** The working context it came from. */
  workingContext: number;
  /** The margin it was written with, as given (e.g. "0", "512", "10%"). */
  margin: string;
  /** When LMStrix last wrote the file (ISO 8601). */
  appliedAt: string;
}

/** The manifest in memory. */
export interface AppliedManifest {
  /** What was applied, by model id. */
  entries: Record<string, AppliedEntry>;
  /**
   * Folders LMStrix created for config files, relative to the config directory. One list for
   * all models, since models share folders: undo removes each once it is empty.
   */
  createdDirs: string[];
}

/** Whether an applied value is still the one the registry's working context gives. */
export type AppliedState = "current" | "stale";

/** Reads the manifest; a missing one is empty. Throws {@linkcode RegistryError} when damaged. */
export function loadApplied(paths: Pick<ApplyPaths, "manifest">): AppliedManifest {
  let text: string;
  try {
    // Synchronous: one small file, read by `list` whose start-up time matters.
    text = Deno.readTextFileSync(paths.manifest);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return { entries: Object.create(null), createdDirs: [] };
    }
    throw damaged(paths.manifest, errorText(error), error);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw damaged(paths.manifest, "it is not valid JSON", error);
  }
  if (!isObject(data) || typeof data["schemaVersion"] !== "number") {
    throw damaged(paths.manifest, `it has no "schemaVersion"`);
  }
  if (data["schemaVersion"] > APPLIED_SCHEMA_VERSION) {
    throw damaged(
      paths.manifest,
      `it has schema version ${data["schemaVersion"]}, newer than this lmstrix reads`,
    );
  }
  const entries = data["entries"];
  if (!isObject(entries)) throw damaged(paths.manifest, `"entries" is not an object`);
  for (const [id, entry] of Object.entries(entries)) {
    if (
      !isObject(entry) || typeof entry["modelPath"] !== "string" ||
      typeof entry["existed"] !== "boolean" || typeof entry["writtenSha256"] !== "string" ||
      typeof entry["contextLength"] !== "number" ||
      (entry["existed"] && typeof entry["backup"] !== "string")
    ) {
      throw damaged(paths.manifest, `the entry of "${id}" is not one lmstrix wrote`);
    }
  }
  const createdDirs = data["createdDirs"] ?? [];
  if (!Array.isArray(createdDirs) || createdDirs.some((d) => typeof d !== "string")) {
    throw damaged(paths.manifest, `"createdDirs" is not a list of folders`);
  }
  // Model ids are arbitrary text: "__proto__" or "constructor" must be plain keys.
  const byId: Record<string, AppliedEntry> = Object.create(null);
  for (const [id, entry] of Object.entries(entries)) byId[id] = entry as unknown as AppliedEntry;
  return { entries: byId, createdDirs: createdDirs as string[] };
}

/** Writes the manifest atomically (creating its directory). */
export async function saveApplied(
  paths: Pick<ApplyPaths, "manifest">,
  manifest: AppliedManifest,
): Promise<void> {
  const entries = Object.fromEntries(
    Object.keys(manifest.entries).sort().map((id) => [id, manifest.entries[id]!]),
  );
  const text = JSON.stringify(
    { schemaVersion: APPLIED_SCHEMA_VERSION, entries, createdDirs: manifest.createdDirs },
    null,
    2,
  ) + "\n";
  await Deno.mkdir(join(paths.manifest, ".."), { recursive: true });
  await writeFileAtomic(paths.manifest, text);
}

/**
 * Whether a model's applied value still matches its working context: `current` when the
 * working context it was applied from is the registry's, `stale` when a later test changed it,
 * null when nothing is applied.
 */
export function appliedState(
  entry: AppliedEntry | undefined,
  workingContext: number | null,
): AppliedState | null {
  if (entry === undefined) return null;
  return entry.workingContext === workingContext ? "current" : "stale";
}

/**
 * Whether `name`, read from the manifest, names a file directly inside `config_backups/`: the
 * manifest is a file on disk that anyone may edit, and a backup of `../../x` would have undo
 * copy that file into LM Studio's config and delete it.
 */
export function isPlainBackupName(name: unknown): name is string {
  return typeof name === "string" && name !== "" && name !== "." && name !== ".." &&
    !/[\\/\0]/.test(name) && !/^[A-Za-z]:/.test(name);
}

/**
 * Whether a folder read from the manifest is one `apply` can have made: the config folder itself
 * (`""`), its parent `.internal` (`".."`), or a relative path below it with no `..`.
 */
export function isCreatedDirName(dir: string): boolean {
  if (dir === "" || dir === "..") return true;
  const parts = dir.split(/[\\/]/);
  return !dir.includes("\0") && !/^[A-Za-z]:/.test(dir) &&
    parts.every((part) => part !== "" && part !== "." && part !== "..");
}

/** SHA-256 of `bytes`, in hex. */
export async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function damaged(file: string, reason: string, cause?: unknown): RegistryError {
  return new RegistryError(`Cannot read the apply record "${file}": ${reason}`, {
    path: file,
    hint: "lmstrix leaves it untouched: fix it or move it aside (undo then cannot restore)",
    ...(cause === undefined ? {} : { cause }),
  });
}

/** What `list`, `show` and `status` say about a model's applied value. */
export interface AppliedSummary {
  /** The context length LMStrix wrote into LM Studio's config. */
  contextLength: number;
  /** Whether it still comes from the model's current working context. */
  state: AppliedState;
  /** The working context it came from. */
  workingContext: number;
  /** The margin it was written with. */
  margin: string;
  /** When it was written (ISO 8601). */
  appliedAt: string;
}

/**
 * The applied value of each model in `records` that has one, by id. Reads the manifest under
 * `paths`; an unreadable manifest is reported through `onProblem` and counts as nothing applied,
 * so that a listing still works.
 */
export function appliedSummaries(
  paths: Pick<LmstrixPaths, "root" | "lmstudioDir">,
  records: readonly { id: string; workingContext: number | null }[],
  onProblem: (message: string) => void = () => {},
): Map<string, AppliedSummary> {
  let manifest: AppliedManifest;
  try {
    manifest = loadApplied(applyPaths(paths));
  } catch (error) {
    onProblem(errorText(error));
    return new Map();
  }
  const summaries = new Map<string, AppliedSummary>();
  for (const record of records) {
    const entry = manifest.entries[record.id];
    if (entry === undefined) continue;
    summaries.set(record.id, {
      contextLength: entry.contextLength,
      state: appliedState(entry, record.workingContext)!,
      workingContext: entry.workingContext,
      margin: entry.margin,
      appliedAt: entry.appliedAt,
    });
  }
  return summaries;
}

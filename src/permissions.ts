/**
 * The Deno permissions LMStrix needs, checked before it touches a file or the network, so that a
 * program using the library without them gets one clear error naming every flag it lacks,
 * instead of a failure halfway through a run.
 *
 * Reading the registry needs `--allow-read` (the LM Studio home) and `--allow-env` (the variables
 * below); writing it (scan, test, apply) also `--allow-write`; talking to LM Studio
 * `--allow-net`. The command line runs with `scripts/permissions.flags`, which grants them all.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

/** The environment variables LMStrix reads (or, for the SDK's plain errors, sets). */
export const ENV_VARIABLES: readonly string[] = [
  "HOME",
  "USERPROFILE",
  "INIT_CWD",
  "LMSTRIX_LMSTUDIO_DIR",
  "LMSTRIX_SERVER",
  "LMSTRIX_TIMEOUT",
  "LMSTRIX_BACKOFF_MS",
  "LMS_NO_FANCY_ERRORS",
];

/** One permission LMStrix needs. */
export type PermissionNeed =
  | { name: "read" | "write"; path: string }
  | { name: "env" }
  | { name: "net"; host: string };

/** Throws {@linkcode UsageError} naming every permission in `needs` that is not granted. */
export function requirePermissions(needs: PermissionNeed[]): void {
  const missing = needs.filter((need) => !granted(need));
  if (missing.length === 0) return;
  const what = missing.map((need) =>
    need.name === "env"
      ? "read environment variables"
      : need.name === "net"
      ? `connect to LM Studio at ${need.host}`
      : `${need.name} "${need.path}"`
  );
  const flags = [...new Set(missing.map((need) => `--allow-${need.name}`))];
  throw new UsageError(`lmstrix needs permission to ${what.join(", ")}`, {
    hint: `run Deno with ${flags.join(" ")} (lmstrix's own: --allow-net --allow-read ` +
      "--allow-write --allow-env)",
  });
}

function granted(need: PermissionNeed): boolean {
  if (need.name === "env") {
    return ENV_VARIABLES.every((variable) =>
      Deno.permissions.querySync({ name: "env", variable }).state === "granted"
    );
  }
  const descriptor: Deno.PermissionDescriptor = need.name === "net"
    ? { name: "net", host: need.host }
    : { name: need.name, path: need.path };
  return Deno.permissions.querySync(descriptor).state === "granted";
}

/** The host of a `ws://host:port` address (default: discovery's 127.0.0.1). */
export function serverHost(server: string | undefined): string {
  if (server === undefined || server.trim() === "") return "127.0.0.1";
  try {
    return new URL(server).hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  } catch {
    return "127.0.0.1"; // A bad address is reported by the connection, with its own message.
  }
}

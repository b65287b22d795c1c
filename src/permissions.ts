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
  "NO_COLOR",
  "COLUMNS",
];

/**
 * The variables the npm libraries read, which the CLI's `--allow-env` must also name (Deno
 * fails a read of any other with NotCapable, even `"X" in process.env`): the SDK
 * (`LMS_KEEP_INTERNAL_STACK`, `NODE_ENV`), chalk's supports-color and cli-table3's @colors,
 * which look at the terminal and the CI when they load, and ws.
 */
export const LIBRARY_ENV_VARIABLES: readonly string[] = [
  "LMS_KEEP_INTERNAL_STACK",
  "NODE_ENV",
  "FORCE_COLOR",
  "CLICOLOR_FORCE",
  "TERM",
  "TERM_PROGRAM",
  "TERM_PROGRAM_VERSION",
  "COLORTERM",
  "CI",
  "CI_NAME",
  "TRAVIS",
  "CIRCLECI",
  "APPVEYOR",
  "GITLAB_CI",
  "GITHUB_ACTIONS",
  "BUILDKITE",
  "TEAMCITY_VERSION",
  "WS_NO_BUFFER_UTIL",
  "WS_NO_UTF_8_VALIDATE",
];

/**
 * The system calls the CLI's `--allow-sys` grants: the uptime (a crash marker's boot,
 * `engine/boot_time.ts`) and, on Windows, the colour libraries' `os.release()`.
 */
export const SYS_CALLS: readonly string[] = ["osUptime", "osRelease"];

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
    hint: `run Deno with ${flags.join(" ")} (lmstrix's own: scripts/permissions.flags)`,
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

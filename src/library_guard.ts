/**
 * What the library adds around each call of the engine's façade ({@linkcode LMStrix}): the Deno
 * permissions the call needs are checked all at once before it starts, so that a program missing
 * several gets one error naming them all; and an error's hint speaks of the library's options and
 * methods (`pass { server }`, `lmstrix.list()`) instead of the command line's flags and commands,
 * which the CLI keeps ({@linkcode CLI_WORDING}).
 *
 * @module
 */

import { isAbsolute } from "node:path";
import { LmstrixError } from "./errors.ts";
import { LMSTUDIO_DIR_ENV, resolveLmstudioDir } from "./paths.ts";
import { type PermissionNeed, requirePermissions, serverHost } from "./permissions.ts";

/** Set in the options by the command line, whose errors keep their flags' words. */
export const CLI_WORDING: unique symbol = Symbol("lmstrix.cliWording");

/** What a method needs beyond the environment: the home's files, writing them, LM Studio. */
const METHOD_NEEDS: Record<string, readonly ("read" | "write" | "net")[]> = {
  list: ["read"],
  records: ["read"],
  show: ["read"],
  history: ["read"],
  status: ["read"],
  report: ["read"],
  getTestedContextLimit: ["read"],
  applyContextLimits: ["read", "write"],
  scan: ["read", "write", "net"],
  test: ["read", "write", "net"],
  testRun: ["read", "write", "net"],
  testContextLimits: ["read", "write", "net"],
  checkContext: ["read", "write", "net"],
  run: ["read", "net"],
};

/** The command line's words in a hint, and the library's for them. */
const LIBRARY_WORDS: [RegExp, string][] = [
  [/--lmstudio-dir/g, "{ lmstudioDir }"],
  [/--server/g, "{ server }"],
  [/--timeout/g, "{ timeoutSeconds }"],
  [/--min-context/g, "{ minContext }"],
  [/--max-context/g, "{ maxContext }"],
  [/--precision/g, "{ precision }"],
  [/--force/g, "{ force: true }"],
  [/--retry-failed/g, "{ retryFailed: true }"],
  [/\brun "lmstrix (\w+)"/g, "call lmstrix.$1()"],
  [/"lmstrix (\w+)"/g, "lmstrix.$1()"],
  [/"lmstrix test [^"]*--ctx[^"]*"/g, "lmstrix.checkContext()"],
  [/"lmstrix [^"]*"/g, "the matching method of LMStrix"],
];

/** `hint` in the library's words (see {@linkcode LIBRARY_WORDS}). */
export function libraryHint(hint: string): string {
  return LIBRARY_WORDS.reduce((text, [pattern, words]) => text.replace(pattern, words), hint);
}

/** The options of the façade the guard reads. */
export interface GuardOptions {
  lmstudioDir?: string | undefined;
  server?: string | undefined;
  env?: ((name: string) => string | undefined) | undefined;
  [CLI_WORDING]?: boolean;
}

/**
 * `engine` behind a proxy that checks each method's permissions before it runs and, unless the
 * command line made it, rewords the hints of the errors it throws.
 */
export function guardLibrary<T extends object>(engine: T, options: GuardOptions): T {
  const cli = options[CLI_WORDING] === true;
  const reword = (error: unknown): unknown => {
    if (!cli && error instanceof LmstrixError && error.hint !== undefined) {
      Object.defineProperty(error, "hint", { value: libraryHint(error.hint) });
    }
    return error;
  };
  return new Proxy(engine, {
    get(target, property) {
      let value: unknown;
      try {
        value = Reflect.get(target, property, target);
      } catch (error) {
        throw reword(error); // a getter (`paths`) that found no home
      }
      if (typeof value !== "function" || typeof property !== "string") return value;
      if (property === "constructor") return value; // `lmstrix.constructor === LMStrix` holds
      const method = value as (...args: unknown[]) => unknown;
      return (...args: unknown[]) => {
        try {
          requireAll(METHOD_NEEDS[property], options);
          const result = method.apply(target, args);
          return result instanceof Promise
            ? result.catch((e) => Promise.reject(reword(e)))
            : result;
        } catch (error) {
          throw reword(error);
        }
      };
    },
  });
}

/**
 * Checks at once what a method needs: the environment (unless injected), the LM Studio home when
 * it is named (found in the usual places, it is checked as it is found) and LM Studio's host.
 */
function requireAll(needs: readonly string[] | undefined, options: GuardOptions): void {
  if (needs === undefined) return;
  const wanted: PermissionNeed[] = [];
  let env = options.env;
  if (env === undefined) {
    const granted = Deno.permissions.querySync({ name: "env", variable: LMSTUDIO_DIR_ENV });
    if (granted.state !== "granted") wanted.push({ name: "env" });
    else env = (name) => Deno.env.get(name);
  }
  let home: string | undefined;
  if (options.lmstudioDir !== undefined || env?.(LMSTUDIO_DIR_ENV)) {
    try {
      const flag = options.lmstudioDir;
      // Without the environment, an absolute path is still known (HOME and INIT_CWD are not).
      home = flag !== undefined && env === undefined && isAbsolute(flag)
        ? flag
        : resolveLmstudioDir({ flag, env: env ?? (() => undefined) });
    } catch {
      // A bad name: the call reports it with its own message.
    }
  }
  if (home !== undefined) {
    if (needs.includes("read")) wanted.push({ name: "read", path: home });
    if (needs.includes("write")) wanted.push({ name: "write", path: home });
  }
  if (needs.includes("net")) wanted.push({ name: "net", host: serverHost(options.server) });
  requirePermissions(wanted);
}

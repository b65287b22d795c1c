/** Spawns the CLI exactly as users run it: `deno run` with the shared permission flags. */

const ROOT = new URL("../../", import.meta.url);

/** The permission flags of `deno task start` and `deno task compile`, from their one definition. */
export const PERMISSION_FLAGS: string[] = Deno.readTextFileSync(
  new URL("scripts/permissions.flags", ROOT),
)
  .trim()
  .split(/\s+/);

/** What a CLI run produced. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link runCli}. */
export interface CliOptions {
  /** The LM Studio home the run uses (LMSTRIX_LMSTUDIO_DIR). */
  home: string;
  /** Extra environment. */
  env?: Record<string, string>;
}

/** The command line that starts the CLI. */
export function cliCommand(args: string[], options: CliOptions): Deno.Command {
  return new Deno.Command("deno", {
    args: ["run", ...PERMISSION_FLAGS, new URL("main.ts", ROOT).pathname, ...args],
    cwd: new URL(".", ROOT).pathname,
    env: { NO_COLOR: "1", LMSTRIX_LMSTUDIO_DIR: options.home, ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs the CLI to completion. */
export async function runCli(args: string[], options: CliOptions): Promise<CliRun> {
  const output = await cliCommand(args, options).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** A fresh LM Studio home in a temp directory, removed by the returned disposer. */
export async function tempHome(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "lmstrix-home-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** A TCP port on 127.0.0.1 that nothing listens on. */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Runs the CLI against the LM Studio at `server` (an emulator's `url`), in the home `home`. */
export function runCliAgainst(
  server: string,
  home: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliRun> {
  return runCli(args, { home, env: { LMSTRIX_SERVER: server, ...env } });
}

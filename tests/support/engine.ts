/**
 * Starts `deno task engine` (the real llama.cpp engine behind LM Studio's protocol) as a child
 * process, with exactly the permissions of its task in deno.json, on a free port.
 */

const ROOT = new URL("../../", import.meta.url);

/** The `deno run` flags of the `engine` task, from its one definition in deno.json. */
function engineTaskArgs(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  const task = String(config.tasks.engine);
  return task.split(/\s+/).slice(2); // after "deno run"
}

/** A running engine server. */
export interface EngineProcess extends AsyncDisposable {
  /** `ws://127.0.0.1:PORT`. */
  url: string;
  /** `http://127.0.0.1:PORT`. */
  httpUrl: string;
  /** Everything it printed on stderr so far. */
  stderr(): string;
}

/** Starts the engine serving `tests/fixtures/models` with `flags` (e.g. the guardrail). */
export async function startEngineProcess(flags: string[]): Promise<EngineProcess> {
  const child = new Deno.Command("deno", {
    args: ["run", ...engineTaskArgs(), "--port", "0", ...flags],
    cwd: ROOT.pathname,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let errors = "";
  (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) errors += chunk;
  })();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const deadline = setTimeout(() => child.kill("SIGKILL"), 180_000);
  while (!/listening (\d+)/.test(out)) {
    const { value, done } = await lines.read();
    if (done) {
      clearTimeout(deadline);
      await child.status;
      throw new Error(`The engine did not start: ${errors}`);
    }
    out += value;
  }
  clearTimeout(deadline);
  lines.releaseLock();
  child.stdout.cancel().catch(() => {});
  const port = Number(/listening (\d+)/.exec(out)![1]);
  return {
    url: `ws://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${port}`,
    stderr: () => errors,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await child.status;
    },
  };
}

/**
 * The Deno side of the engine's Node worker (`worker.mjs`): starts it, sends requests, matches
 * answers, and caps its memory.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** A failed worker request: the engine's message and the lines llama.cpp logged meanwhile. */
export class WorkerError extends Error {
  readonly log: string[];
  constructor(message: string, log: string[]) {
    super(message);
    this.log = log;
  }
}

type Answer = Record<string, unknown> & { id: number; ok: boolean };

/** A running worker. */
export class EngineWorker {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pending = new Map<number, (answer: Answer) => void>();
  #nextId = 1;
  #closed = false;
  /** Settles when the worker exits. */
  readonly exited: Promise<Deno.CommandStatus>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.exited = child.status;
    this.#read();
    child.status.then(() => {
      this.#closed = true;
      for (const resolve of this.#pending.values()) {
        resolve({ id: 0, ok: false, error: "The engine's worker exited", log: [] });
      }
      this.#pending.clear();
    });
  }

  /** The worker's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Starts `node worker.mjs` with node-llama-cpp from `modulesDir`. */
  static async start(modulesDir: string, threads: number): Promise<EngineWorker> {
    const script = fileURLToPath(new URL("./worker.mjs", import.meta.url));
    const child = new Deno.Command("node", {
      args: [script, modulesDir, String(threads)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const worker = new EngineWorker(child);
    await worker.request("init");
    return worker;
  }

  async #read(): Promise<void> {
    const lines = this.#child.stdout.pipeThrough(new TextDecoderStream());
    let buffer = "";
    for await (const chunk of lines) {
      buffer += chunk;
      let at;
      while ((at = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 1);
        let answer: Answer;
        try {
          answer = JSON.parse(line);
        } catch {
          continue;
        }
        this.#pending.get(answer.id)?.(answer);
        this.#pending.delete(answer.id);
      }
    }
  }

  /** Sends one request; resolves with its answer or throws a {@link WorkerError}. */
  async request(op: string, params: Record<string, unknown> = {}): Promise<Answer> {
    if (this.#closed) throw new WorkerError("The engine's worker exited", []);
    const id = this.#nextId++;
    const answered = new Promise<Answer>((resolve) => this.#pending.set(id, resolve));
    await this.#writer.write(
      new TextEncoder().encode(JSON.stringify({ id, op, ...params }) + "\n"),
    );
    const answer = await answered;
    if (!answer.ok) {
      throw new WorkerError(String(answer.error), Array.isArray(answer.log) ? answer.log : []);
    }
    return answer;
  }

  /** The id the next request will get (to cancel a completion while it runs). */
  peekId(): number {
    return this.#nextId;
  }

  /**
   * Caps the worker's address space at its present size plus `budget` bytes (`prlimit --as`),
   * so that what the models and contexts allocate beyond the budget fails in llama.cpp.
   */
  async capMemory(budget: number): Promise<number> {
    const { addressSpace } = await this.request("addressSpace");
    const cap = Number(addressSpace) + budget;
    const result = await new Deno.Command("prlimit", {
      args: ["--pid", String(this.pid), `--as=${cap}:${cap}`],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!result.success) {
      throw new Error(`prlimit failed: ${new TextDecoder().decode(result.stderr).trim()}`);
    }
    return cap;
  }

  /** Ends the worker (its contexts and models go with it). */
  async close(): Promise<void> {
    if (!this.#closed) {
      try {
        await this.#writer.close();
      } catch {
        // Already gone.
      }
      const timer = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }, 3000);
      await this.exited;
      clearTimeout(timer);
    }
  }
}

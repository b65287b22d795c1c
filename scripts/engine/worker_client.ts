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
  /** The worker died during the request (its exit code, or its signal's name). */
  readonly exit: string | null;
  constructor(message: string, log: string[], exit: string | null = null) {
    super(message);
    this.log = log;
    this.exit = exit;
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
  /** The last lines the worker wrote on stderr (llama.cpp's abort message when it dies). */
  #stderr: string[] = [];
  /** Settles when the worker exits. */
  readonly exited: Promise<Deno.CommandStatus>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.exited = child.status;
    this.#read();
    this.#readErrors();
    child.status.then(async (status) => {
      this.#closed = true;
      await new Promise((resolve) => setTimeout(resolve, 50)); // Its last stderr lines.
      // A shell's exit code: 128 + the signal's number (an abort in llama.cpp: 134).
      const numbers: Record<string, number> = { SIGABRT: 6, SIGBUS: 7, SIGKILL: 9, SIGSEGV: 11 };
      const exit = status.signal === null
        ? String(status.code)
        : String(128 + (numbers[status.signal] ?? 0));
      for (const resolve of this.#pending.values()) {
        resolve({
          id: 0,
          ok: false,
          error: `The engine exited (${exit})`,
          log: this.#stderr.slice(-5),
          exit,
        });
      }
      this.#pending.clear();
    });
  }

  /** The worker's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Starts `node worker.mjs` with node-llama-cpp from `modulesDir`; with `budget`, contexts
   * created with `capped` are made under a real memory cap (see worker.mjs).
   */
  static async start(
    modulesDir: string,
    threads: number,
    budget: number | null = null,
  ): Promise<EngineWorker> {
    const script = fileURLToPath(new URL("./worker.mjs", import.meta.url));
    const child = new Deno.Command("node", {
      args: [script, modulesDir, String(threads), ...(budget === null ? [] : [String(budget)])],
      // Large buffers always mapped and unmapped (glibc otherwise raises its mmap threshold
      // after the first free, and freed contexts stay in the heap), one malloc arena: measured,
      // the address space then returns to its idle size after every context, failed or not,
      // so the same size loads or fails the same way every time.
      env: { MALLOC_MMAP_THRESHOLD_: "131072", MALLOC_ARENA_MAX: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const worker = new EngineWorker(child);
    await worker.request("init");
    return worker;
  }

  async #readErrors(): Promise<void> {
    let buffer = "";
    for await (const chunk of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        if (line.trim() === "") continue;
        this.#stderr.push(line.trim());
        if (this.#stderr.length > 20) this.#stderr.shift();
      }
    }
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
    if (this.#closed) throw new WorkerError("The engine exited", [], "gone");
    const id = this.#nextId++;
    const answered = new Promise<Answer>((resolve) => this.#pending.set(id, resolve));
    await this.#writer.write(
      new TextEncoder().encode(JSON.stringify({ id, op, ...params }) + "\n"),
    );
    const answer = await answered;
    if (!answer.ok) {
      const exit = typeof answer.exit === "string" ? answer.exit : null;
      throw new WorkerError(
        String(answer.error),
        Array.isArray(answer.log) ? answer.log : [],
        exit,
      );
    }
    return answer;
  }

  /** The id the next request will get (to cancel a completion while it runs). */
  peekId(): number {
    return this.#nextId;
  }

  /** Whether the worker has exited. */
  get closed(): boolean {
    return this.#closed;
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

/**
 * Telling a person's second Ctrl-C from one keypress delivered twice.
 *
 * A terminal sends Ctrl-C to the whole foreground process group. Under `deno task start` that
 * group holds `deno task` and the CLI, so the CLI gets SIGINT once from the terminal and once
 * more forwarded by `deno task`, a few milliseconds apart. Taking the second as "quit at once"
 * skipped the cleanup: models stayed loaded, and the load cut short was counted as a crash on the
 * next run. So a repeat of the same signal counts only after a clear gap, the time a person needs
 * to press the keys again; a different signal (SIGTERM after SIGINT) always counts.
 *
 * @module
 */

/** The least time between two deliveries of one signal for the second to be a second request. */
export const REPEAT_GAP_MS = 1000;

/** What a received signal asks for. */
export type InterruptVerdict =
  /** The first stop request: unload, save, release the lock, then exit. */
  | "stop"
  /** A second request while stopping: exit at once. */
  | "quit"
  /** The same request delivered again (process group and `deno task` forwarding): ignore. */
  | "duplicate";

/** Classifies the signals of one run. */
export class InterruptGate {
  readonly #now: () => number;
  readonly #gapMs: number;
  #first: string | undefined;
  readonly #last = new Map<string, number>();

  /** A gate reading time from `now` (milliseconds), counting repeats after `gapMs`. */
  constructor(now: () => number = () => performance.now(), gapMs: number = REPEAT_GAP_MS) {
    this.#now = now;
    this.#gapMs = gapMs;
  }

  /** The signal that asked the run to stop, if any did. */
  get first(): string | undefined {
    return this.#first;
  }

  /** What `signal`, received now, asks for. */
  receive(signal: string): InterruptVerdict {
    const now = this.#now();
    const last = this.#last.get(signal);
    this.#last.set(signal, now);
    if (this.#first === undefined) {
      this.#first = signal;
      return "stop";
    }
    if (last === undefined || now - last >= this.#gapMs) return "quit";
    return "duplicate";
  }
}

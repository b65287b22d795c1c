/**
 * `test`'s progress on stderr: a line when a model starts, one per finished attempt, and on a
 * terminal a live line for the attempt under way that keeps the run's position (`[3/15]`) and an
 * estimate of the time left, made from what the models finished so far in this run cost
 * ({@linkcode RunClock}).
 *
 * Every line fits the width of stderr (`Output.errColumns`): the model name is shortened from
 * the middle and the timing left out before a verdict or a number would be cut. An attempt reads
 * the same in every line and at every width (`needle 7,815 tokens in ctx 131,072`).
 *
 * @module
 */

import type { TestEvent } from "../lmstrix.ts";
import { displayText, type Output } from "../output.ts";
import type { AttemptLogEntry } from "../registry/attempt_log.ts";
import { attemptParts } from "./attempt_line.ts";
import { fitLine, formatDuration, formatTokens } from "./format.ts";

/**
 * What a run has cost so far, to estimate the time left. A model's time is taken as a fixed part
 * (connection, sanity check, the search's steps) plus a part in proportion to its file size (a
 * load reads the file; prefill runs through the weights): the two are fitted by least squares to
 * the models finished in this run, so that a machine where loads dominate and one where every
 * model costs about the same both get a fair estimate. With one model done the two parts are
 * taken as equal. None before the first model is done: a guess from nothing would mislead more
 * than it helps.
 */
export class RunClock {
  readonly #sizes = new Map<string, number>();
  #order: string[] = [];
  readonly #done: { bytes: number; ms: number }[] = [];
  #current: { id: string; since: number } | undefined;

  /** The models of the run, in order, with their sizes. */
  start(models: { id: string; sizeBytes: number }[]): void {
    this.#order = models.map((m) => m.id);
    // A size of 0 (unknown) still counts as a model: each gets at least a byte.
    for (const m of models) this.#sizes.set(m.id, Math.max(1, m.sizeBytes));
  }

  /** Model `id` starts at `now` (ms). */
  modelStart(id: string, now: number): void {
    this.#current = { id, since: now };
  }

  /** The model under way finished at `now`. */
  modelDone(now: number): void {
    if (this.#current === undefined) return;
    const bytes = this.#sizes.get(this.#current.id) ?? 1;
    this.#done.push({ bytes, ms: now - this.#current.since });
    this.#current = undefined;
  }

  /** The estimated time left at `now`, in ms, or undefined before any model has finished. */
  leftMs(now: number): number | undefined {
    const cost = this.#costModel();
    if (cost === undefined || this.#current === undefined) return undefined;
    const predict = (id: string) => cost.fixedMs + cost.msPerByte * (this.#sizes.get(id) ?? 1);
    const index = this.#order.indexOf(this.#current.id);
    const later = this.#order.slice(index + 1).reduce((sum, id) => sum + predict(id), 0);
    const current = Math.max(0, predict(this.#current.id) - (now - this.#current.since));
    return current + later;
  }

  /** A model's time as `fixedMs + msPerByte * size`, fitted to the models done. */
  #costModel(): { fixedMs: number; msPerByte: number } | undefined {
    const done = this.#done;
    if (done.length === 0) return undefined;
    const n = done.length;
    const meanBytes = done.reduce((sum, d) => sum + d.bytes, 0) / n;
    const meanMs = done.reduce((sum, d) => sum + d.ms, 0) / n;
    const spread = done.reduce((sum, d) => sum + (d.bytes - meanBytes) ** 2, 0);
    if (spread === 0) {
      // One model done, or all of one size: half fixed, half in proportion to size.
      return { fixedMs: meanMs / 2, msPerByte: meanMs / 2 / meanBytes };
    }
    const slope = done.reduce((sum, d) => sum + (d.bytes - meanBytes) * (d.ms - meanMs), 0) /
      spread;
    // Neither part can be negative: a smaller model that took longer means no size part, a
    // fixed part below zero means time in proportion to size alone.
    if (slope <= 0) return { fixedMs: meanMs, msPerByte: 0 };
    const fixed = meanMs - slope * meanBytes;
    if (fixed < 0) return { fixedMs: 0, msPerByte: meanMs / meanBytes };
    return { fixedMs: fixed, msPerByte: slope };
  }
}

/** An estimate of time left as a person reads it: `about 40 s left`, `about 12 min left`. */
export function formatLeft(ms: number): string {
  const seconds = ms / 1000;
  if (seconds < 60) return `about ${Math.max(5, Math.round(seconds / 5) * 5)} s left`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min left`;
  return `about ${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

/**
 * Time an attempt has been under way, in whole seconds, or "" in its first second (a live line
 * that says `0 ms` reads as if nothing happened).
 */
export function formatElapsed(ms: number): string {
  if (ms < 1000) return "";
  const seconds = Math.floor(ms / 1000);
  if (seconds < 120) return `${seconds} s`;
  return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

/**
 * Turns search events into progress lines: live on a terminal, plain lines otherwise. With
 * `--verbose`, each attempt adds its detail (the answer or refusal excerpt, retries, the error).
 * A model's result is not progress: the caller prints it (stdout, or stderr under `--json`).
 */
export function progressReporter(output: Output, now: () => number = () => performance.now()): {
  onEvent: (event: TestEvent) => void;
  stop: () => void;
} {
  let modelStart = now();
  let opStart = now();
  const clock = new RunClock();
  let position = "";
  let current: { id: string; what: string } | undefined;
  let ticker: ReturnType<typeof setInterval> | undefined;
  const width = () => output.errColumns;
  const tick = () => {
    if (current === undefined) return;
    const at = now();
    output.progress(
      liveLine(position, current, formatElapsed(at - opStart), clock.leftMs(at), width()),
      { final: false },
    );
  };
  const stop = () => {
    if (ticker !== undefined) clearInterval(ticker);
    ticker = undefined;
  };
  const onEvent = (event: TestEvent) => {
    switch (event.type) {
      case "run-start":
        clock.start(event.models);
        break;
      case "model-start":
        modelStart = now();
        clock.modelStart(event.id, modelStart);
        position = `[${event.index + 1}/${event.total}] `;
        {
          // Also off a terminal (a cron log), the start of a model says how much is left.
          const left = clock.leftMs(modelStart);
          output.progress(fitLine({
            before: position,
            name: displayText(event.id),
            after: event.resumed ? " (resuming)" : "",
            optional: left === undefined ? "" : `; ${formatLeft(left)}`,
          }, width()));
        }
        break;
      case "attempt-start":
        opStart = now();
        current = { id: event.id, what: underWay(event) };
        if (output.stderr.isTerminal && !output.quiet) {
          tick();
          ticker ??= setInterval(tick, 1000);
        }
        break;
      case "attempt":
        output.progress(attemptLine(event.id, event.entry, now() - modelStart, width()));
        for (const line of attemptDetail(event.entry)) output.debug(`    ${line}`);
        break;
      case "model-done":
        stop();
        current = undefined;
        clock.modelDone(now());
        break;
      case "warning":
        output.warn(event.message);
        break;
      case "selected":
        break;
    }
  };
  return { onEvent, stop };
}

/**
 * The live line of an attempt under way, redrawn each second: the run's position, the model,
 * the attempt, its time so far and the run's time left. The times go first when room is short.
 */
function liveLine(
  position: string,
  current: { id: string; what: string },
  elapsed: string,
  leftMs: number | undefined,
  width: number | undefined,
): string {
  const left = leftMs === undefined ? "" : formatLeft(leftMs);
  const times = (parts: string[]) => {
    const shown = parts.filter((part) => part !== "");
    return shown.length === 0 ? "" : ` ${shown.join(", ")}`;
  };
  return fitLine({
    before: position,
    name: displayText(current.id),
    after: [
      `: ${current.what}...${times([elapsed, left])}`,
      `: ${current.what}...${times([left])}`,
      `: ${current.what}...`,
    ],
  }, width);
}

/** What an attempt under way is doing, in the words of its finished line (less the phase). */
function underWay(event: Extract<TestEvent, { type: "attempt-start" }>): string {
  const ctx = event.context > 0 ? `ctx ${formatTokens(event.context)}` : "";
  if (event.action === "needle") {
    return `needle ${formatTokens(event.promptTokens)} tokens${ctx ? ` in ${ctx}` : ""}`;
  }
  if (event.action === "sanity") return `sanity${ctx ? ` in ${ctx}` : ""}`;
  return `${event.action} ${ctx}`;
}

/** A finished attempt: what was tried and the verdict, then its time and the model's so far. */
function attemptLine(
  id: string,
  entry: AttemptLogEntry,
  modelMs: number,
  width: number | undefined,
): string {
  const { what, verdict } = attemptParts(entry);
  return fitLine({
    before: "  ",
    name: displayText(id),
    after: `: ${what}: ${verdict}`,
    optional: ` (${formatDuration(entry.durationMs)}, ${formatDuration(modelMs)} on this model)`,
  }, width);
}

/** The detail `--verbose` adds under an attempt: what came back, retries, the error. */
function attemptDetail(entry: AttemptLogEntry): string[] {
  const lines: string[] = [];
  if (entry.output !== null && entry.output !== "") {
    const label = entry.action === "load" || entry.action === "check" ? "message" : "answer";
    lines.push(`${label}: ${displayText(entry.output)}`);
  }
  if (entry.retries > 0) lines.push(`retries: ${entry.retries}`);
  if (entry.error !== null) lines.push(`error: ${displayText(entry.error)}`);
  return lines;
}

/**
 * Unit tests of LmStudioProbe's retries: transient faults (a dropped connection, a hung call) are
 * retried with exponential backoff through the injected `sleep`, a lost instance is reloaded at
 * the same size first, and everything else reaches the caller at once. No server, no waiting.
 *
 * @module
 */

import assert from "node:assert/strict";
import type {
  CheckResult,
  Completion,
  LmStudio,
  LoadedInstance,
  LoadedModel,
  LoadResult,
} from "../src/lmstudio/client.ts";
import { type FailureKind, LmStudioCallError } from "../src/lmstudio/failures.ts";
import { LmStudioProbe } from "../src/probe/lmstudio_probe.ts";

/** A scripted LM Studio: each call takes the next fault of its script, if any, else succeeds. */
class ScriptedLmStudio implements LmStudio {
  readonly baseUrl = "ws://scripted";
  readonly calls: string[] = [];
  readonly loaded = new Map<string, number>();
  faults: Partial<Record<"load" | "check" | "complete", FailureKind[]>> = {};

  #fault(call: "load" | "check" | "complete"): void {
    const kind = this.faults[call]?.shift();
    if (kind) throw new LmStudioCallError(call, kind, `${call} failed: ${kind}`);
  }

  listModels(): Promise<never[]> {
    return Promise.resolve([]);
  }

  listLoaded(): Promise<LoadedInstance[]> {
    this.calls.push("listLoaded");
    return Promise.resolve(
      [...this.loaded].map(([identifier, contextLength]) => ({
        identifier,
        modelKey: "m",
        contextLength,
      })),
    );
  }

  load(_key: string, contextLength: number, options: { identifier: string }): Promise<LoadResult> {
    this.calls.push(`load ${contextLength}`);
    this.#fault("load");
    this.loaded.set(options.identifier, contextLength);
    const model: LoadedModel = {
      identifier: options.identifier,
      modelKey: "m",
      contextLength,
      countTokens: (text) => Promise.resolve(text.length),
      complete: (): Promise<Completion> => {
        this.calls.push("complete");
        this.#fault("complete");
        return Promise.resolve({ text: " 4", promptTokens: 4 });
      },
      unload: () => {
        this.loaded.delete(options.identifier);
        return Promise.resolve();
      },
    };
    return Promise.resolve({ kind: "loaded", model, actual: contextLength });
  }

  /** A check that started; a fault leaves its instance loaded, like a cancel that came late. */
  check(
    _key: string,
    contextLength: number,
    options: { identifier: string },
  ): Promise<CheckResult> {
    this.calls.push(`check ${contextLength}`);
    this.loaded.set(options.identifier, contextLength);
    this.#fault("check");
    this.loaded.delete(options.identifier);
    return Promise.resolve({ kind: "started", completed: false });
  }

  unload(identifier: string): Promise<void> {
    this.calls.push(`unload ${identifier}`);
    this.loaded.delete(identifier);
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A probe on `lms` whose sleeps are recorded (and advance its clock) instead of waited. */
function probeOn(lms: LmStudio, options: { retries?: number; signal?: AbortSignal } = {}) {
  const sleeps: number[] = [];
  let clock = 0;
  const retried: string[] = [];
  const probe = new LmStudioProbe(lms, "m", {
    backoffMs: 100,
    runId: "t",
    ...options,
    sleep: (ms, signal) => {
      if (signal?.aborted) return Promise.reject(signal.reason);
      sleeps.push(ms);
      clock += ms;
      return Promise.resolve();
    },
    now: () => clock,
    onRetry: (what, _error, attempt) => retried.push(`${what} ${attempt}`),
  });
  return { probe, sleeps, retried };
}

Deno.test("the probe retries transient faults with exponential backoff", async (t) => {
  await t.step("a hung prediction is retried after 100, 200 and 400 ms", async () => {
    const lms = new ScriptedLmStudio();
    const { probe, sleeps, retried } = probeOn(lms);
    await probe.load(4096);
    lms.faults.complete = ["timeout", "timeout", "timeout"];
    const answer = await probe.sanity();
    assert.equal(answer.pass, true);
    assert.deepEqual(sleeps, [100, 200, 400]);
    assert.deepEqual(retried, ["complete 1", "complete 2", "complete 3"]);
    assert.equal(probe.last.retries, 3);
    assert.equal(probe.last.durationMs, 700, "the duration is measured on the injected clock");
  });

  await t.step("when the retries run out the fault reaches the caller", async () => {
    const lms = new ScriptedLmStudio();
    const { probe, sleeps } = probeOn(lms, { retries: 2 });
    await probe.load(4096);
    lms.faults.complete = ["timeout", "connection-lost", "timeout"];
    await assert.rejects(probe.sanity(), (error) => {
      assert.ok(error instanceof LmStudioCallError);
      assert.equal(error.kind, "timeout");
      return true;
    });
    assert.deepEqual(sleeps, [100, 200]);
    assert.match(probe.last.error ?? "", /timeout/);
  });

  await t.step("an instance the fault took away is reloaded at the same size first", async () => {
    const lms = new ScriptedLmStudio();
    const { probe } = probeOn(lms);
    await probe.load(6144);
    lms.loaded.clear(); // the server restarted and lost the instance
    lms.faults.complete = ["connection-lost"];
    lms.calls.length = 0;
    assert.equal((await probe.sanity()).pass, true);
    assert.deepEqual(lms.calls, ["complete", "listLoaded", "listLoaded", "load 6144", "complete"]);
    assert.equal(probe.loads, 2);
  });

  await t.step("a dropped load is retried after clearing what it may have left", async () => {
    const lms = new ScriptedLmStudio();
    const { probe, sleeps } = probeOn(lms);
    lms.faults.load = ["connection-lost"];
    assert.deepEqual(await probe.load(8192), { kind: "loaded", actual: 8192 });
    assert.deepEqual(sleeps, [100]);
    assert.deepEqual(lms.calls, ["load 8192", "listLoaded", "load 8192"]);
    lms.faults.load = ["not-found"];
    await assert.rejects(probe.load(8192), LmStudioCallError, "an unknown model is not retried");
  });

  await t.step("a dropped check is retried after clearing what it may have left", async () => {
    const lms = new ScriptedLmStudio();
    const { probe, sleeps, retried } = probeOn(lms);
    lms.faults.check = ["connection-lost"];
    const outcome = await probe.check(8192);
    assert.deepEqual(outcome, { kind: "started" }, "a retried check is not timed");
    assert.deepEqual(sleeps, [100]);
    assert.deepEqual(retried, ["check 1"]);
    assert.deepEqual(lms.calls, ["check 8192", "listLoaded", "unload lmstrix-t-1", "check 8192"]);
    assert.deepEqual([...lms.loaded.keys()], []);
    assert.deepEqual([probe.checks, probe.loads], [2, 0]);
    assert.equal(probe.last.retries, 1);
  });

  await t.step("an instance someone else unloaded is loaded again once, at once", async () => {
    const lms = new ScriptedLmStudio();
    const { probe, sleeps } = probeOn(lms);
    await probe.load(4096);
    lms.loaded.clear(); // `lms unload` from another client
    lms.faults.complete = ["not-found"];
    lms.calls.length = 0;
    assert.equal((await probe.sanity()).pass, true);
    assert.deepEqual(lms.calls, ["complete", "listLoaded", "listLoaded", "load 4096", "complete"]);
    assert.deepEqual(sleeps, [], "no backoff: the server is fine");
    lms.loaded.clear();
    lms.faults.complete = ["not-found", "not-found"];
    await assert.rejects(probe.sanity(), LmStudioCallError, "unloaded again: the test fails");
  });

  await t.step("a fault that is not transient is never retried", async () => {
    for (const kind of ["other"] as const) {
      const lms = new ScriptedLmStudio();
      const { probe, sleeps } = probeOn(lms);
      await probe.load(4096);
      lms.faults.complete = [kind];
      await assert.rejects(probe.sanity(), LmStudioCallError);
      assert.deepEqual(sleeps, [], kind);
    }
  });

  await t.step("an interrupt during the backoff ends the retries at once", async () => {
    const lms = new ScriptedLmStudio();
    const interrupt = new AbortController();
    interrupt.abort("SIGINT");
    const { probe, sleeps } = probeOn(lms, { signal: interrupt.signal });
    lms.faults.load = ["timeout", "timeout"];
    await assert.rejects(probe.load(4096), (reason) => reason === "SIGINT");
    assert.deepEqual(sleeps, []);
    assert.deepEqual(lms.calls, ["load 4096"]);
  });
});

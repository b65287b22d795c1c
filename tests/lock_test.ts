/**
 * Tests for src/registry/lock.ts: the writer lock, within one process and across processes.
 *
 * The cross-process cases spawn `deno eval` children that take the lock through the same module,
 * so they need `--allow-run=deno`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { LockHeldError } from "../src/errors.ts";
import type { LmstrixPaths } from "../src/paths.ts";
import { acquireLock, readLockHolder } from "../src/registry/lock.ts";
import { withTempPaths } from "./support/records.ts";

const LOCK_MODULE = import.meta.resolve("../src/registry/lock.ts");
const PATHS_MODULE = import.meta.resolve("../src/paths.ts");
const CHILD_READY_TIMEOUT_MS = 30_000;

/** A `deno eval` child running `code`, with its stdout readable line by line. */
class Child {
  readonly process: Deno.ChildProcess;
  #lines: AsyncIterator<string>;
  #buffer = "";

  constructor(code: string) {
    this.process = new Deno.Command("deno", {
      args: ["eval", "--no-config", code],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = this.process.stdout.pipeThrough(new TextDecoderStream())[Symbol.asyncIterator]();
  }

  /** The next stdout line, or an error when none comes in time. */
  async nextLine(): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("child did not answer in time")),
        CHILD_READY_TIMEOUT_MS,
      );
    });
    try {
      while (!this.#buffer.includes("\n")) {
        const chunk = await Promise.race([this.#lines.next(), timeout]);
        if (chunk.done) throw new Error(`child ended; output so far: ${this.#buffer}`);
        this.#buffer += chunk.value;
      }
    } finally {
      clearTimeout(timer);
    }
    const end = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end + 1);
    return line;
  }

  /** Kills the child (if still running) and waits for it, draining stdout. */
  async stop(signal: Deno.Signal = "SIGKILL"): Promise<Deno.CommandStatus> {
    try {
      this.process.kill(signal);
    } catch {
      // Already gone.
    }
    const status = await this.process.status;
    await this.#lines.return?.();
    return status;
  }
}

/** Starts a child that takes the lock, prints "locked", and holds it until killed. */
async function childHoldingLock(paths: LmstrixPaths): Promise<Child> {
  const child = new Child(`
    import { acquireLock } from ${JSON.stringify(LOCK_MODULE)};
    import { lmstrixPaths } from ${JSON.stringify(PATHS_MODULE)};
    await acquireLock(lmstrixPaths(${JSON.stringify(paths.lmstudioDir)}));
    console.log("locked");
    setInterval(() => {}, 60_000);
  `);
  assert.equal(await child.nextLine(), "locked");
  return child;
}

Deno.test("the writer lock within one process", async (t) => {
  await t.step("acquireLock writes pid and start time, release empties the file", async () => {
    await withTempPaths(async (paths) => {
      const lock = await acquireLock(paths, { pid: 4242, now: () => new Date(0) });
      assert.deepEqual(JSON.parse(await Deno.readTextFile(paths.lock)), {
        pid: 4242,
        startedAt: "1970-01-01T00:00:00.000Z",
      });
      assert.equal(lock.startedAt, "1970-01-01T00:00:00.000Z");
      await lock.release();
      await lock.release(); // A second release does nothing.
      assert.equal(await Deno.readTextFile(paths.lock), "");
    });
  });

  await t.step("a second acquire throws LockHeldError with the holder's pid", async () => {
    await withTempPaths(async (paths) => {
      const lock = await acquireLock(paths, { pid: 777 });
      try {
        await assert.rejects(acquireLock(paths, { retryDelayMs: 1 }), (error: unknown) => {
          assert.ok(error instanceof LockHeldError);
          assert.equal(error.pid, 777);
          assert.equal(error.startedAt, lock.startedAt);
          assert.equal(error.path, paths.lock);
          assert.match(error.message, /pid 777/);
          return true;
        });
      } finally {
        await lock.release();
      }
    });
  });

  await t.step("after release the lock can be taken again", async () => {
    await withTempPaths(async (paths) => {
      await (await acquireLock(paths)).release();
      const again = await acquireLock(paths);
      await again.release();
    });
  });

  await t.step("await using releases the lock at the end of the block", async () => {
    await withTempPaths(async (paths) => {
      {
        await using _lock = await acquireLock(paths);
        assert.notEqual(await readLockHolder(paths), null);
      }
      assert.equal(await readLockHolder(paths), null);
    });
  });

  await t.step("readLockHolder reports nobody without a lock file", async () => {
    await withTempPaths(async (paths) => {
      assert.equal(await readLockHolder(paths), null);
    });
  });

  await t.step("readLockHolder reports the holder while the lock is held", async () => {
    await withTempPaths(async (paths) => {
      const lock = await acquireLock(paths, { pid: 99 });
      try {
        assert.deepEqual(await readLockHolder(paths), { pid: 99, startedAt: lock.startedAt });
        // Probing does not take the lock away from its holder.
        await assert.rejects(acquireLock(paths, { retryDelayMs: 1 }), LockHeldError);
      } finally {
        await lock.release();
      }
    });
  });

  await t.step("readLockHolder ignores leftover content of a lock nobody holds", async () => {
    await withTempPaths(async (paths) => {
      await Deno.mkdir(paths.root, { recursive: true });
      await Deno.writeTextFile(paths.lock, JSON.stringify({ pid: 12345, startedAt: "x" }));
      assert.equal(await readLockHolder(paths), null);
      const lock = await acquireLock(paths);
      await lock.release();
    });
  });
});

Deno.test("the writer lock across processes", async (t) => {
  await t.step("a child's lock blocks this process and is reported with its pid", async () => {
    await withTempPaths(async (paths) => {
      const child = await childHoldingLock(paths);
      try {
        const holder = await readLockHolder(paths);
        assert.equal(holder?.pid, child.process.pid);
        await assert.rejects(acquireLock(paths), (error: unknown) => {
          assert.ok(error instanceof LockHeldError);
          assert.equal(error.pid, child.process.pid);
          return true;
        });
      } finally {
        await child.stop();
      }
    });
  });

  await t.step("a holder killed with SIGKILL leaves no stale lock", async () => {
    await withTempPaths(async (paths) => {
      const child = await childHoldingLock(paths);
      const status = await child.stop("SIGKILL");
      assert.equal(status.signal, "SIGKILL");
      // The dead holder's pid is still in the file, yet the lock is free.
      assert.equal(JSON.parse(await Deno.readTextFile(paths.lock)).pid, child.process.pid);
      assert.equal(await readLockHolder(paths), null);
      const lock = await acquireLock(paths);
      assert.equal((await readLockHolder(paths))?.pid, Deno.pid);
      await lock.release();
    });
  });

  await t.step("this process's lock makes a child fail with LockHeldError", async () => {
    await withTempPaths(async (paths) => {
      const lock = await acquireLock(paths);
      try {
        const child = new Child(`
          import { acquireLock } from ${JSON.stringify(LOCK_MODULE)};
          import { lmstrixPaths } from ${JSON.stringify(PATHS_MODULE)};
          try {
            await acquireLock(lmstrixPaths(${JSON.stringify(paths.lmstudioDir)}));
            console.log("acquired");
          } catch (error) {
            console.log(error.name + " " + error.pid);
          }
        `);
        try {
          assert.equal(await child.nextLine(), `LockHeldError ${Deno.pid}`);
        } finally {
          await child.stop();
        }
      } finally {
        await lock.release();
      }
    });
  });
});

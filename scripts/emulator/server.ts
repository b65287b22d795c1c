/**
 * An LM Studio emulator: a server that speaks LM Studio's WebSocket protocol well enough for the
 * real `@lmstudio/sdk` (1.5.0) to list, load, count tokens, complete and unload against it, with
 * models described by profiles (see `profile.ts`), a virtual clock, scripted faults and
 * statistics over HTTP. It does not import the SDK.
 *
 * HTTP on the same port:
 * - `GET /lmstudio-greeting` -> `{"lmstudio":true,"lmstrixEmulator":true}` (how LM Studio is
 *   discovered; the mark keeps LMStrix's discovery from adopting the emulator unasked)
 * - `GET /__emulator/stats`, `POST /__emulator/reset`, `POST /__emulator/load`,
 *   `POST /__emulator/faults`, `GET /__emulator/profiles`
 * - WebSocket upgrade on `/llm`, `/embedding`, `/system`, `/diagnostics`, `/files`,
 *   `/repository`, `/plugins` (one per SDK namespace).
 *
 * CLI: `deno task emulator [--port N] [--profiles FILE]` takes a free port unless given one,
 * prints `LM Studio emulator listening on ws://127.0.0.1:N` and runs until SIGINT/SIGTERM.
 *
 * The folder, one concern a file: `server.ts` (this: start and stop), `http.ts` (routes),
 * `protocol.ts` (its back end of the shared protocol layer in `scripts/protocol/`: what each
 * call answers), `core.ts` (state), `../protocol/wire.ts` (error shape, config
 * stacks), `stats.ts` (what it observed); for the models, `profile.ts` (types and truth),
 * `validation.ts`, `tokenizer.ts`, `answers.ts` and `timing.ts` (the virtual clock);
 * `main.ts` is the command line.
 *
 * Behaviour choices where LM Studio's own is not pinned down: a load asking for more than the
 * declared context fails; a dropped load loads nothing; a hung call ignores cancel; models loaded
 * by a client stay loaded when it disconnects; predictions on one instance are not queued. A
 * load reports progress only once the guardrail let it start (an engine failure comes after
 * progress), and a cancel before it finished costs a fixed `firstProgressMs + cancelMs`.
 *
 * @module
 */

import { EmulatorCore } from "./core.ts";
import { handleHttp, json, loadByHand } from "./http.ts";
import type { ModelProfile } from "./profile.ts";
import type { EmulatorStats, LoadedRecord, OneShotFaults } from "./stats.ts";
import { validateProfile } from "./validation.ts";

export interface EmulatorOptions {
  /** The models the emulator serves. */
  profiles: ModelProfile[];
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  /**
   * Real milliseconds to sleep per virtual millisecond (default 0: answer at once), so that a
   * client timing calls with its own clock observes the emulator's cost model.
   */
  timeScale?: number;
  /**
   * Real milliseconds an unpaced load (no `timeScale`, no real delay in its profile) waits after
   * its first progress report for the client to cancel it, ending early when the cancel comes.
   * Without it (the default, 0: every load would pay it, and the tests load thousands of times)
   * such a load is over before any cancel can arrive; a paced load has its own waits. The
   * emulator's command line, the demo and the bench use {@link CANCEL_HOLD_MS}.
   */
  cancelHoldMs?: number;
}

/**
 * A hold long enough for a client on the same machine to see the first progress and cancel (a
 * round trip of a few ms), with room for a busy machine; short enough that the demo and the
 * bench, which load a few hundred times, pay seconds for it.
 */
export const CANCEL_HOLD_MS = 40;

/** A running emulator. */
export interface Emulator {
  /** The port it listens on. */
  readonly port: number;
  /** WebSocket base URL for the SDK, `ws://127.0.0.1:PORT`. */
  readonly url: string;
  /** HTTP base URL, `http://127.0.0.1:PORT`. */
  readonly httpUrl: string;
  /** Virtual milliseconds elapsed since start or reset: a clock to inject into a client. */
  now(): number;
  /** A snapshot of the statistics. */
  stats(): EmulatorStats;
  /** Clears statistics, fault counters and the clock, and unloads everything. */
  reset(): void;
  /** Arms one-shot faults. */
  injectFaults(faults: OneShotFaults): void;
  /** Loads a model as if the user did it by hand (not counted in `loads`). */
  loadByHand(modelKey: string, identifier?: string, contextLength?: number): LoadedRecord;
  /** Closes every connection and stops the server. */
  close(): Promise<void>;
}

/** Starts an emulator serving `profiles` on 127.0.0.1 (port 0 picks a free port). */
export function startEmulator(options: EmulatorOptions): Promise<Emulator> {
  const profiles = options.profiles.map((profile, index) =>
    validateProfile(profile, `profiles[${index}]`)
  );
  const core = new EmulatorCore(
    profiles,
    options.timeScale ?? 0,
    options.cancelHoldMs ?? 0,
  );
  return new Promise((resolveStart, rejectStart) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: "127.0.0.1",
        port: options.port ?? 0,
        onListen: ({ port }) => {
          const emulator: Emulator = {
            port,
            url: `ws://127.0.0.1:${port}`,
            httpUrl: `http://127.0.0.1:${port}`,
            now: () => core.clock.now,
            stats: () => core.stats(),
            reset: () => core.reset(),
            injectFaults: (faults) => Object.assign(core.oneShot, faults),
            loadByHand: (modelKey, identifier, contextLength) =>
              loadByHand(core, modelKey, identifier, contextLength),
            close: async () => {
              for (const connection of core.connections) {
                for (const channel of connection.channels.values()) channel.abort.abort();
                try {
                  connection.socket.close();
                } catch {
                  // Already closed.
                }
              }
              core.connections.clear();
              await server.shutdown();
            },
          };
          resolveStart(emulator);
        },
        onError: (error) => json({ error: String(error) }, 500),
      }, (request) => handleHttp(core, request));
    } catch (error) {
      rejectStart(error);
    }
  });
}

/**
 * The real engine's server: LM Studio's protocol (the layer shared with the emulator) over
 * llama.cpp, serving the GGUF files of a models folder.
 *
 * HTTP on the same port: `GET /lmstudio-greeting` (with the emulator's mark, so that LMStrix's
 * discovery does not adopt it unasked), `GET /__engine/stats` (the loads and predictions it
 * served, with their real times), and the WebSocket upgrades of the SDK's namespaces.
 *
 * @module
 */

import { EMULATOR_GREETING_MARK } from "../../src/lmstudio/discovery.ts";
import { EngineBackend, type Guardrail } from "./backend.ts";
import { readCatalogue } from "./catalogue.ts";
import { ensureNodeLlamaCpp } from "./install.ts";
import { EngineWorker } from "./worker_client.ts";
import { acceptSocket, closeConnections } from "../protocol/frames.ts";

/** How to start the engine's server. */
export interface EngineOptions {
  /** The models folder (`<publisher>/<repo>/<file>.gguf`). */
  models: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. */
  port?: number;
  /** "on": refuse loads the engine's estimate says exceed the budget; "off": let them fail. */
  guardrail?: Guardrail;
  /** Bytes the models and contexts may take beyond the idle engine; null: no cap. */
  memoryBudget?: number | null;
  /**
   * llama.cpp's threads (default 1). On a busy machine its threads wait on each other: measured
   * here with the load at 8 per core, 32 greedy tokens of a tiny model took 36 ms on one thread
   * and 11.4 s on two (a 442-token prefill: 35 ms against 799 ms).
   */
  threads?: number;
  /** Progress lines (the install of node-llama-cpp). */
  log?: (line: string) => void;
}

/** A running engine server. */
export interface EngineServer {
  readonly port: number;
  readonly url: string;
  readonly backend: EngineBackend;
  /** The real memory cap on contexts (bytes), or null (guardrail on, or no budget). */
  readonly memoryCap: number | null;
  close(): Promise<void>;
}

/** Starts the engine's server. */
export async function startEngine(options: EngineOptions): Promise<EngineServer> {
  const log = options.log ?? (() => {});
  const models = await readCatalogue(options.models);
  const modules = await ensureNodeLlamaCpp(log);
  const threads = options.threads ?? 1;
  const budget = options.memoryBudget ?? null;
  // Guardrail off: the memory itself says no (a real cap while a context is made). On: the
  // estimate decides, as LM Studio's guardrail does (node-llama-cpp's estimate runs below the
  // real use, so a cap would refuse first and the guardrail would never be seen).
  const memoryCap = options.guardrail === "off" ? budget : null;
  const startWorker = () => EngineWorker.start(modules, threads, memoryCap);
  const backend = new EngineBackend(models, await startWorker(), {
    guardrail: options.guardrail ?? "on",
    budget,
    restart: startWorker,
  });
  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json" },
    });
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    onListen: () => {},
  }, (request) => {
    const path = new URL(request.url).pathname;
    if (request.method === "GET" && path === "/lmstudio-greeting") {
      return json({ lmstudio: true, [EMULATOR_GREETING_MARK]: true, lmstrixEngine: true });
    }
    if (request.method === "GET" && path === "/__engine/stats") {
      return json({
        ...backend.stats,
        loaded: [...backend.instances.keys()],
        memoryCap,
        crashes: backend.crashes,
      });
    }
    return acceptSocket(backend, request) ?? json({ error: `no route for ${path}` }, 404);
  });
  const port = server.addr.port;
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    backend,
    memoryCap,
    async close() {
      closeConnections(backend);
      await server.shutdown();
      await backend.worker.close();
    },
  };
}

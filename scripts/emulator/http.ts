/**
 * The LM Studio emulator's HTTP routes: the greeting, the `/__emulator/*` control routes and the
 * WebSocket upgrade.
 *
 * @module
 */

import { EMULATOR_GREETING_MARK } from "../../src/lmstudio/discovery.ts";
import type { EmulatorCore } from "./core.ts";
import { acceptSocket } from "../protocol/frames.ts";
import { emulatorBackend } from "./protocol.ts";
import type { LoadedRecord } from "./stats.ts";
import { isRecord, type Json, LmsError } from "../protocol/wire.ts";

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

async function readJsonBody(request: Request): Promise<Json> {
  const text = await request.text();
  if (text.trim() === "") return {};
  const body: unknown = JSON.parse(text);
  if (!isRecord(body)) throw new Error("expected a JSON object");
  return body;
}

export function loadByHand(
  core: EmulatorCore,
  modelKey: string,
  identifier?: string,
  contextLength?: number,
): LoadedRecord {
  const profile = core.findProfile(modelKey);
  if (profile === undefined) throw core.notFoundError(modelKey);
  const context = core.admitLoad(
    profile,
    contextLength ?? core.defaultContext(profile),
    identifier,
  );
  return core.loadedRecord(core.addInstance(profile, identifier, context));
}

export async function handleHttp(core: EmulatorCore, request: Request): Promise<Response> {
  const url = new URL(request.url);
  const route = `${request.method} ${url.pathname}`;
  try {
    switch (route) {
      case "GET /lmstudio-greeting":
        // The mark keeps LMStrix's discovery from adopting the emulator unasked.
        return json({ lmstudio: true, [EMULATOR_GREETING_MARK]: true });
      case "GET /__emulator/stats":
        return json(core.stats());
      case "GET /__emulator/profiles":
        return json({ models: core.profiles });
      case "POST /__emulator/reset":
        core.reset();
        return json({ ok: true });
      case "POST /__emulator/faults": {
        const body = await readJsonBody(request);
        const allowed = [
          "dropNextLoad",
          "dropNextPredict",
          "hangNextLoad",
          "hangNextPredict",
          "hangNextCountTokens",
          "malformNextListing",
          "endlessNextPredict",
        ] as const;
        for (const key of Object.keys(body)) {
          if (!(allowed as readonly string[]).includes(key)) {
            return json({ error: `unknown fault "${key}"` }, 400);
          }
        }
        for (const key of allowed) if (body[key] === true) core.oneShot[key] = true;
        return json({ ok: true, armed: core.oneShot });
      }
      case "POST /__emulator/load": {
        const body = await readJsonBody(request);
        if (typeof body.modelKey !== "string") return json({ error: "modelKey is required" }, 400);
        const identifier = typeof body.identifier === "string" ? body.identifier : undefined;
        const context = typeof body.contextLength === "number" ? body.contextLength : undefined;
        try {
          return json(loadByHand(core, body.modelKey, identifier, context));
        } catch (error) {
          if (!(error instanceof LmsError)) throw error;
          const status = error.wire.displayData?.code === "generic.pathNotFound" ? 404 : 409;
          return json({ error: error.message }, status);
        }
      }
    }
  } catch (error) {
    return json({ error: (error as Error).message }, 400);
  }
  const upgraded = acceptSocket(emulatorBackend(core), request);
  if (upgraded !== null) return upgraded;
  return json({ error: `no route for ${route}` }, 404);
}

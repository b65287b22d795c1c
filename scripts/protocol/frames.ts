/**
 * LM Studio's WebSocket protocol, written once for the two servers that speak it: the emulator
 * (`scripts/emulator/`) and the real engine's server (`scripts/engine/`). This layer does the
 * framing: authentication, keep-alives, RPC calls and channels matched to their ids, cancels,
 * refusals of signals, and the error shape. What a call means (list, load, predict, unload,
 * count tokens) is each back end's business: {@link ProtocolBackend}.
 *
 * @module
 */

import { isRecord, type Json, LmsError, NAMESPACES, type WireError } from "./wire.ts";

/** One channel a client opened (a load, a prediction). */
export interface ChannelState {
  endpoint: string;
  /** Set while the channel can still be cancelled. */
  abort: AbortController;
  /** A hung channel ignores everything. */
  hung: boolean;
}

/** One client socket (the SDK opens one per namespace). */
export interface Connection {
  socket: WebSocket;
  namespace: string;
  authenticated: boolean;
  channels: Map<number, ChannelState>;
}

/** Thrown inside a handler to end it without an answer (the socket was dropped or it hangs). */
export class Silenced extends Error {}

/** What a server answers; the framing is this module's. */
export interface ProtocolBackend {
  /** Every open connection (closed by the server when it stops). */
  readonly connections: Set<Connection>;
  /** Who answers, in error titles of the back end's own bugs ("emulator", "engine"). */
  readonly name: string;
  /**
   * Answers an RPC call of `connection.namespace`, or throws an {@link LmsError} (sent to the
   * client) or {@link Silenced} (no answer). A synchronous answer is sent at once.
   */
  rpc(connection: Connection, endpoint: string, parameter: Json): unknown;
  /**
   * Runs a channel of `connection.namespace` to its end, sending on it with {@link send}; null
   * when the back end has no such channel.
   */
  channel(
    connection: Connection,
    channelId: number,
    channel: ChannelState,
    endpoint: string,
    creation: Json,
  ): Promise<void> | null;
}

/** Sends a frame, if the socket is still open. */
export function send(connection: Connection, message: Json): void {
  if (connection.socket.readyState === WebSocket.OPEN) {
    connection.socket.send(JSON.stringify(message));
  }
}

/** Sends a message on a channel. */
export function sendOnChannel(connection: Connection, channelId: number, message: Json): void {
  send(connection, { type: "channelSend", channelId, message });
}

/** Sends an answer's token pieces on a channel as LM Studio streams them: in three fragments. */
export function sendFragments(connection: Connection, channelId: number, pieces: string[]): void {
  const chunk = Math.max(1, Math.ceil(pieces.length / 3));
  for (let i = 0; i < pieces.length; i += chunk) {
    const slice = pieces.slice(i, i + chunk);
    sendOnChannel(connection, channelId, {
      type: "fragment",
      fragment: {
        content: slice.join(""),
        tokensCount: slice.length,
        containsDrafted: false,
        reasoningType: "none",
        isStructural: false,
      },
    });
  }
}

/** The model and configuration a prediction's end names beside its statistics. */
export interface PredictionAbout {
  modelInfo: unknown;
  loadModelConfig: unknown;
  predictionConfig: unknown;
}

/** Ends a prediction's channel as LM Studio does: success with the statistics, then close. */
export function endPrediction(
  connection: Connection,
  channelId: number,
  stats: Json,
  about: PredictionAbout,
): void {
  const { modelInfo, loadModelConfig, predictionConfig } = about;
  sendOnChannel(connection, channelId, {
    type: "success",
    stats,
    modelInfo,
    loadModelConfig,
    predictionConfig,
  });
  send(connection, { type: "channelClose", channelId });
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** The text of a chat history the SDK sends with `complete` (its messages' text parts). */
export function historyText(history: unknown): string {
  if (!isRecord(history) || !Array.isArray(history.messages)) return "";
  const texts: string[] = [];
  for (const message of history.messages) {
    if (!isRecord(message) || !Array.isArray(message.content)) continue;
    for (const part of message.content) {
      if (isRecord(part) && part.type === "text" && typeof part.text === "string") {
        texts.push(part.text);
      }
    }
  }
  return texts.join("\n\n");
}

function toWireError(backend: ProtocolBackend, error: unknown): WireError {
  if (error instanceof LmsError) return error.wire;
  const title = `Internal ${backend.name} error: ${
    error instanceof Error ? error.message : String(error)
  }`;
  return { title, rootTitle: title };
}

function unknownEndpoint(backend: ProtocolBackend, kind: string, name: string): LmsError {
  return new LmsError(`Unknown ${kind} endpoint "${name}"`, {
    cause: `The LM Studio ${backend.name} does not implement this endpoint.`,
  });
}

function answerRpc(backend: ProtocolBackend, connection: Connection, message: Json): void {
  const callId = message.callId;
  const endpoint = String(message.endpoint);
  const fail = (error: unknown) => {
    if (error instanceof Silenced) return;
    send(connection, { type: "rpcError", callId, error: toWireError(backend, error) });
  };
  const succeed = (result: unknown) => send(connection, { type: "rpcResult", callId, result });
  try {
    const parameter = isRecord(message.parameter) ? message.parameter : {};
    let result: unknown;
    if (connection.namespace === "system" && endpoint === "version") {
      result = { version: "0.3.30", build: 1 };
    } else if (connection.namespace === "system" && endpoint === "getExperimentFlags") {
      result = [];
    } else {
      result = backend.rpc(connection, endpoint, parameter);
    }
    if (result instanceof Promise) result.then(succeed, fail);
    else succeed(result);
  } catch (error) {
    fail(error);
  }
}

function openChannel(backend: ProtocolBackend, connection: Connection, message: Json): void {
  const channelId = Number(message.channelId);
  const endpoint = String(message.endpoint);
  const channel: ChannelState = { endpoint, abort: new AbortController(), hung: false };
  connection.channels.set(channelId, channel);
  if (connection.namespace === "system" && endpoint === "alive") return; // Open while wanted.
  const creation = isRecord(message.creationParameter) ? message.creationParameter : {};
  const work = backend.channel(connection, channelId, channel, endpoint, creation) ??
    Promise.reject(unknownEndpoint(backend, "channel", `${connection.namespace}/${endpoint}`));
  work.then(
    () => connection.channels.delete(channelId),
    (error: unknown) => {
      if (error instanceof Silenced) {
        if (!channel.hung) connection.channels.delete(channelId);
        return;
      }
      connection.channels.delete(channelId);
      send(connection, { type: "channelError", channelId, error: toWireError(backend, error) });
    },
  );
}

/** Handles one frame from a client. */
export function handleFrame(backend: ProtocolBackend, connection: Connection, data: unknown): void {
  let message: unknown;
  try {
    message = JSON.parse(String(data));
  } catch {
    send(connection, { type: "communicationWarning", warning: "Received invalid JSON" });
    return;
  }
  if (!isRecord(message)) return;
  if (!connection.authenticated) {
    if (message.authVersion === 1) {
      connection.authenticated = true;
      send(connection, { success: true });
    } else {
      send(connection, { success: false, error: "Expected an authentication message first" });
    }
    return;
  }
  switch (message.type) {
    case "keepAlive":
      send(connection, { type: "keepAliveAck" });
      return;
    case "rpcCall":
      answerRpc(backend, connection, message);
      return;
    case "channelCreate":
      openChannel(backend, connection, message);
      return;
    case "channelSend": {
      const channel = connection.channels.get(Number(message.channelId));
      if (channel === undefined || channel.hung) return;
      if (isRecord(message.message) && message.message.type === "cancel") channel.abort.abort();
      return;
    }
    case "signalSubscribe":
      send(connection, {
        type: "signalError",
        subscribeId: message.subscribeId,
        error: toWireError(backend, unknownEndpoint(backend, "signal", String(message.endpoint))),
      });
      return;
    case "writableSignalSubscribe":
      send(connection, {
        type: "writableSignalError",
        subscribeId: message.subscribeId,
        error: toWireError(
          backend,
          unknownEndpoint(backend, "writable signal", String(message.endpoint)),
        ),
      });
      return;
    default:
      // communicationWarning, channelAck, unsubscribes: nothing to do.
      return;
  }
}

/**
 * Accepts a WebSocket upgrade on a namespace path (`/llm`, `/system`, ...) for `backend`, or
 * returns null when the request is not for one.
 */
export function acceptSocket(backend: ProtocolBackend, request: Request): Response | null {
  const namespace = new URL(request.url).pathname.slice(1);
  if (request.method !== "GET" || !NAMESPACES.has(namespace)) return null;
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return new Response(JSON.stringify({ error: "expected a WebSocket upgrade" }), {
      status: 426,
      headers: { "content-type": "application/json" },
    });
  }
  const { socket, response } = Deno.upgradeWebSocket(request);
  const connection: Connection = { socket, namespace, authenticated: false, channels: new Map() };
  backend.connections.add(connection);
  socket.onmessage = (event) => handleFrame(backend, connection, event.data);
  socket.onclose = () => {
    backend.connections.delete(connection);
    for (const channel of connection.channels.values()) channel.abort.abort();
    connection.channels.clear();
  };
  socket.onerror = () => {};
  return response;
}

/** Closes every connection of `backend` (its channels cancelled first). */
export function closeConnections(backend: ProtocolBackend): void {
  for (const connection of backend.connections) {
    for (const channel of connection.channels.values()) channel.abort.abort();
    try {
      connection.socket.close();
    } catch {
      // Already closed.
    }
  }
  backend.connections.clear();
}

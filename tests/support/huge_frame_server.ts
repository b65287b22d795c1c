/**
 * A hostile server for one case: it accepts the WebSocket handshake, then announces a message of
 * 200 MB (only the frame's header is sent), which the SDK's socket refuses ("Max payload size
 * exceeded"). No emulator can do this: a WebSocket server API sends whole messages.
 *
 * @module
 */

import { encodeBase64 } from "./base64.ts";

/** The size the frame announces: above ws's 100 MiB limit. */
const ANNOUNCED_BYTES = 200_000_000;

/** Runs `fn` with the address of such a server on a free port, then stops it. */
export async function withHugeFrameServer<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        handle(conn).catch(() => {}).finally(() => conns.delete(conn));
      }
    } catch {
      // The listener closed.
    }
  })();
  try {
    return await fn(`ws://127.0.0.1:${listener.addr.port}`);
  } finally {
    listener.close();
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    await serving;
  }
}

async function handle(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(16_384);
  let request = "";
  while (!request.includes("\r\n\r\n")) {
    const n = await conn.read(buffer);
    if (n === null) return;
    request += new TextDecoder().decode(buffer.subarray(0, n));
  }
  const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(request)?.[1];
  const write = (bytes: Uint8Array) => conn.write(bytes);
  if (key === undefined) {
    await write(new TextEncoder().encode("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"));
    conn.close();
    return;
  }
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  await write(new TextEncoder().encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${encodeBase64(new Uint8Array(digest))}\r\n\r\n`,
  ));
  const header = new Uint8Array(10);
  header[0] = 0x81; // The last frame of a text message.
  header[1] = 127; // A 64-bit length follows.
  new DataView(header.buffer).setBigUint64(2, BigInt(ANNOUNCED_BYTES));
  await write(header);
  await write(new TextEncoder().encode("x".repeat(1024)));
  while ((await conn.read(buffer)) !== null) {
    // Hold the connection until the client goes.
  }
}

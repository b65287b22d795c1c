/**
 * A TCP proxy in front of the LM Studio emulator that can make LM Studio misbehave as a whole:
 * freeze (connections stay open, nothing is answered, as a hung server) and restart (every
 * connection drops, the port refuses for a while, then accepts again, as LM Studio restarting).
 *
 * @module
 */

/** A running proxy; `url` is what the CLI is pointed at. */
export interface Proxy extends AsyncDisposable {
  readonly port: number;
  /** `ws://127.0.0.1:<port>`. */
  readonly url: string;
  /** Stops forwarding in both directions; connections stay open and new ones are accepted. */
  freeze(): void;
  /** Forwards again (what was held is delivered). */
  thaw(): void;
  /** Drops every connection and refuses new ones for `downMs`, then accepts again. */
  restart(downMs: number): Promise<void>;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

/** Starts a proxy on a free port forwarding to `127.0.0.1:<targetPort>`. */
export function startProxy(targetPort: number): Proxy {
  let listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const sockets = new Set<Deno.Conn>();
  let thawed: PromiseWithResolvers<void> | undefined;
  let accepted = 0;
  let closed = false;

  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        while (thawed) await thawed.promise;
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
      }
    } catch {
      // One side went away.
    }
    for (const conn of [from, to]) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      sockets.delete(conn);
    }
  };

  const serve = async (current: Deno.Listener) => {
    try {
      for await (const client of current) {
        accepted++;
        let upstream: Deno.Conn;
        try {
          upstream = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
        } catch {
          client.close();
          continue;
        }
        sockets.add(client);
        sockets.add(upstream);
        pump(client, upstream);
        pump(upstream, client);
      }
    } catch {
      // The listener was closed.
    }
  };
  serve(listener);

  const dropAll = () => {
    for (const conn of sockets) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    sockets.clear();
  };

  const proxy: Proxy = {
    port,
    url: `ws://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    freeze() {
      thawed ??= Promise.withResolvers<void>();
    },
    thaw() {
      thawed?.resolve();
      thawed = undefined;
    },
    async restart(downMs: number) {
      listener.close();
      dropAll();
      await new Promise((resolve) => setTimeout(resolve, downMs));
      if (closed) return;
      listener = Deno.listen({ hostname: "127.0.0.1", port });
      serve(listener);
    },
    async close() {
      if (closed) return;
      closed = true;
      proxy.thaw();
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      dropAll();
      await Promise.resolve();
    },
    async [Symbol.asyncDispose]() {
      await proxy.close();
    },
  };
  return proxy;
}

/**
 * A real browser for tests: headless Chromium (Debian's `chromium` package; `.ci/run` installs
 * it when missing) driven over the DevTools protocol with Deno's own WebSocket. It opens a page,
 * records every request the page makes (`Network.requestWillBeSent`, the page's own document
 * included), evaluates expressions in it and takes screenshots.
 *
 * A few lines of the DevTools protocol rather than an npm client (playwright-core, puppeteer):
 * the tests need five commands, and those clients download their own browser or spawn it with
 * pipes that Deno's Node layer handles less well than a plain WebSocket.
 *
 * @module
 */

/** Where Chromium is looked for, first found wins (`CHROMIUM` overrides). */
const CANDIDATES = [
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
  "/Applications/Chromium.app/Contents/MacOS/Chromium",
];

/** The Chromium executable, or an error that says how to install it. */
export function chromiumPath(): string {
  const named = Deno.env.get("CHROMIUM");
  for (const path of named ? [named] : CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  throw new Error(
    "No Chromium found (looked at " + (named ?? CANDIDATES.join(", ")) + "); install it " +
      '("apt-get install chromium", as .ci/run does) or set CHROMIUM to its path',
  );
}

/** A request a page made. */
export interface PageRequest {
  url: string;
  /** Why the browser blocked it, when it did (a Content-Security-Policy: "csp"). */
  blockedReason?: string;
}

/** An open headless browser with one page. */
export interface Browser extends AsyncDisposable {
  /** Opens `url` and waits for its load event; returns the requests made so far by the page. */
  open(url: string): Promise<PageRequest[]>;
  /** Evaluates `expression` in the page and returns its value (JSON-serialisable). */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the page at `width` pixels, its top `maxHeight` pixels at most. */
  screenshot(width: number, maxHeight?: number): Promise<Uint8Array>;
  /** Every request the page made since it was opened. */
  readonly requests: PageRequest[];
}

type Message = {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
};

/** Starts headless Chromium with a fresh profile; dispose it to close it and remove the profile. */
export async function startChromium(): Promise<Browser> {
  const profile = await Deno.makeTempDir({ prefix: "lmstrix-chromium-" });
  const child = new Deno.Command(chromiumPath(), {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-default-apps",
      "--no-first-run",
      "--hide-scrollbars",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const cleanup = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone already
    }
    await child.status;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };
  let socket: WebSocket;
  try {
    socket = await connect(await devtoolsUrl(child.stderr));
  } catch (error) {
    await cleanup();
    throw error;
  }
  let nextId = 0;
  const pending = new Map<number, (message: Message) => void>();
  const listeners = new Set<(message: Message) => void>();
  socket.onmessage = (event) => {
    const message = JSON.parse(String(event.data)) as Message;
    if (message.id !== undefined) pending.get(message.id)?.(message);
    else for (const listener of listeners) listener(message);
  };
  let sessionId: string | undefined;
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, (message) => {
        pending.delete(id);
        if (message.error) reject(new Error(`${method}: ${message.error.message}`));
        else resolve(message.result ?? {});
      });
      socket.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  const requests: PageRequest[] = [];
  const byId = new Map<string, PageRequest>();
  listeners.add((message) => {
    const params = message.params ?? {};
    if (message.method === "Network.requestWillBeSent") {
      const request: PageRequest = { url: String((params.request as { url: string }).url) };
      byId.set(String(params.requestId), request);
      requests.push(request);
    } else if (message.method === "Network.loadingFailed" && params.blockedReason) {
      const request = byId.get(String(params.requestId));
      if (request) request.blockedReason = String(params.blockedReason);
    }
  });
  try {
    const { targetId } = await send("Target.createTarget", { url: "about:blank" });
    ({ sessionId } = await send("Target.attachToTarget", { targetId, flatten: true }) as {
      sessionId: string;
    });
    await send("Network.enable");
    await send("Page.enable");
  } catch (error) {
    socket.close();
    await cleanup();
    throw error;
  }
  const evaluate = async <T>(expression: string): Promise<T> => {
    const { result, exceptionDetails } = await send("Runtime.evaluate", {
      expression,
      returnByValue: true,
    }) as { result: { value: T }; exceptionDetails?: { text: string } };
    if (exceptionDetails) throw new Error(`evaluate: ${exceptionDetails.text}`);
    return result.value;
  };
  return {
    requests,
    evaluate,
    async open(url) {
      const loaded = new Promise<void>((resolve) => {
        const listener = (message: Message) => {
          if (message.method !== "Page.loadEventFired") return;
          listeners.delete(listener);
          resolve();
        };
        listeners.add(listener);
      });
      requests.length = 0;
      await send("Page.navigate", { url });
      await loaded;
      return [...requests];
    },
    async screenshot(width, maxHeight = Infinity) {
      const full = await evaluate<number>("document.documentElement.scrollHeight");
      const height = Math.min(full, maxHeight);
      await send("Emulation.setDeviceMetricsOverride", {
        width,
        height: Math.ceil(height),
        deviceScaleFactor: 1,
        mobile: false,
      });
      const { data } = await send("Page.captureScreenshot", { format: "png" }) as {
        data: string;
      };
      return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    },
    async [Symbol.asyncDispose]() {
      sessionId = undefined;
      await send("Browser.close").catch(() => {});
      socket.close();
      await cleanup();
    },
  };
}

/** Reads Chromium's stderr until it says where its DevTools endpoint listens. */
async function devtoolsUrl(stderr: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  const reader = stderr.getReader();
  const deadline = setTimeout(() => reader.cancel(), 30_000);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (match) {
        // Keep draining stderr so that Chromium never blocks on a full pipe.
        (async () => {
          try {
            while (!(await reader.read()).done) { /* drain */ }
          } catch { /* closed */ }
        })();
        return match[1]!;
      }
    }
  } finally {
    clearTimeout(deadline);
  }
  throw new Error(`Chromium did not start its DevTools endpoint:\n${text.slice(-2000)}`);
}

function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.onopen = () => resolve(socket);
    socket.onerror = (event) => reject(new Error(`DevTools connection failed: ${event}`));
  });
}

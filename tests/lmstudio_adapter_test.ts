/** Server discovery and failure classification of the LM Studio adapter. */

import assert from "node:assert/strict";
import { discoverServer, normaliseServerUrl } from "../src/lmstudio/discovery.ts";
import { classifyFailure, LmStudioCallError } from "../src/lmstudio/failures.ts";
import { closedPort } from "./support/cli.ts";
import { testProfile, withEmulator } from "./support/emulator.ts";

Deno.test("discovery", async (t) => {
  await t.step("normalises the addresses users type", () => {
    assert.equal(normaliseServerUrl("ws://127.0.0.1:1234"), "ws://127.0.0.1:1234");
    assert.equal(normaliseServerUrl("localhost:1234/"), "ws://localhost:1234");
    assert.equal(normaliseServerUrl("http://10.0.0.2:1234"), "ws://10.0.0.2:1234");
    assert.throws(() => normaliseServerUrl("ftp://x:1"), TypeError);
  });

  await t.step("finds the first port whose greeting says lmstudio: true", async () => {
    const other = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => Response.json({ hello: 1 }),
    );
    const lmstudio = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) =>
        new URL(request.url).pathname === "/lmstudio-greeting"
          ? Response.json({ lmstudio: true })
          : new Response("no", { status: 404 }),
    );
    try {
      const ports = [closedPort(), other.addr.port, lmstudio.addr.port];
      const found = await discoverServer({ ports, timeoutMs: 2_000 });
      assert.deepEqual(found, { found: true, baseUrl: `ws://127.0.0.1:${lmstudio.addr.port}` });
    } finally {
      await other.shutdown();
      await lmstudio.shutdown();
    }
  });

  await t.step("lists what it tried when nothing answers", async () => {
    const port = closedPort();
    const found = await discoverServer({ ports: [port], timeoutMs: 500 });
    assert.deepEqual(found, { found: false, tried: [`http://127.0.0.1:${port}`], emulators: [] });
  });

  await t.step("never adopts LMStrix's emulator unless it is named", async () => {
    await withEmulator([testProfile("fake-model")], async (emulator) => {
      const found = await discoverServer({ ports: [emulator.port], timeoutMs: 2_000 });
      assert.deepEqual(found, {
        found: false,
        tried: [emulator.httpUrl],
        emulators: [emulator.httpUrl],
      });
      const named = await discoverServer({ server: emulator.url, ports: [emulator.port] });
      assert.deepEqual(named, { found: true, baseUrl: emulator.url });
    });
  });

  await t.step("uses an explicit server as given, without probing", async () => {
    const found = await discoverServer({ server: "127.0.0.1:9", ports: [] });
    assert.deepEqual(found, { found: true, baseUrl: "ws://127.0.0.1:9" });
  });
});

Deno.test("failures are classified from LM Studio's wording", async (t) => {
  const cases: [string, unknown, string][] = [
    [
      "a refused socket",
      Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }),
      "unreachable",
    ],
    ["a closed socket", new Error("WebSocket connection closed"), "connection-lost"],
    [
      "the guardrail refusal",
      new Error(
        "Model loading was stopped due to insufficient system resources. Under the current settings, this model requires approximately 22.7 GB of memory",
      ),
      "refused",
    ],
    [
      "the older guardrail wording",
      new Error("Model loading aborted due to insufficient system resources"),
      "refused",
    ],
    [
      "an engine failure",
      new Error("Error loading model. (Exit code: 6). Unknown error."),
      "refused",
    ],
    ["a missing model", new Error("Cannot find a model with path qwen/x"), "not-found"],
    [
      "a context overflow",
      new Error(
        "The number of tokens to keep from the initial prompt is greater than the context length",
      ),
      "context-overflow",
    ],
    ["anything else", new Error("something odd"), "other"],
  ];
  for (const [name, error, kind] of cases) {
    await t.step(name, () => assert.equal(classifyFailure(error), kind));
  }
  await t.step("with colour codes and boxes stripped", () => {
    assert.equal(
      classifyFailure(
        new Error("\x1b[31mModel loading was stopped\x1b[39m │ insufficient system resources"),
      ),
      "refused",
    );
  });
  await t.step("only dropped connections and timeouts are transient", () => {
    assert.ok(new LmStudioCallError("load", "connection-lost", "x").transient);
    assert.ok(new LmStudioCallError("complete", "timeout", "x").transient);
    assert.ok(!new LmStudioCallError("load", "refused", "x").transient);
  });
});

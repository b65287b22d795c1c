/**
 * `deno task engine`: LM Studio's protocol over a real llama.cpp engine, until SIGINT/SIGTERM.
 * A test tool (see docs/engine.md), never part of the product.
 *
 * @module
 */

import { startEngine } from "./server.ts";
import type { Guardrail } from "./backend.ts";

const USAGE = `Usage: deno task engine [--port N] [--models DIR] [--guardrail on|off]
                        [--memory-budget BYTES] [--threads N]

  --port N              TCP port on 127.0.0.1 (default 0: a free one)
  --models DIR          GGUF files as <publisher>/<repo>/<file>.gguf
                        (default tests/fixtures/models)
  --guardrail on|off    on (default): refuse at once a load whose estimated
                        memory exceeds the budget; off: let llama.cpp try
  --memory-budget BYTES memory the models and contexts may take (a real cap
                        on the engine's process; default: none)
  --threads N           llama.cpp threads (default 1: see docs/engine.md)`;

function fail(message: string): number {
  console.error(`error: ${message}\n\n${USAGE}`);
  return 2;
}

async function main(args: string[]): Promise<number> {
  let port = 0;
  let models = "tests/fixtures/models";
  let guardrail: Guardrail = "on";
  let memoryBudget: number | null = null;
  let threads: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const [flag, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = () => inline ?? args[++i];
    const integer = (max: number) => {
      const text = value();
      const n = Number(text);
      return text !== undefined && Number.isInteger(n) && n >= 0 && n <= max ? n : null;
    };
    if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      return 0;
    } else if (flag === "--port") {
      const n = integer(65535);
      if (n === null) return fail("--port must be an integer from 0 to 65535");
      port = n;
    } else if (flag === "--models") {
      const dir = value();
      if (dir === undefined) return fail("--models needs a folder");
      models = dir;
    } else if (flag === "--guardrail") {
      const mode = value();
      if (mode !== "on" && mode !== "off") return fail('--guardrail must be "on" or "off"');
      guardrail = mode;
    } else if (flag === "--memory-budget") {
      const n = integer(Number.MAX_SAFE_INTEGER);
      if (n === null || n < 1) return fail("--memory-budget must be a positive number of bytes");
      memoryBudget = n;
    } else if (flag === "--threads") {
      const n = integer(256);
      if (n === null || n < 1) return fail("--threads must be an integer from 1 to 256");
      threads = n;
    } else {
      return fail(`unknown argument "${arg}"`);
    }
  }
  let server;
  try {
    server = await startEngine({
      models,
      port,
      guardrail,
      memoryBudget,
      ...(threads === undefined ? {} : { threads }),
      log: (line) => console.error(line),
    });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      console.error(
        `error: port ${port} is already in use\nhint: leave out --port to take a free one`,
      );
      return 1;
    }
    console.error(`error: cannot start the engine: ${(error as Error).message}`);
    return 1;
  }
  console.log(`listening ${server.port}`);
  console.error(
    `LM Studio protocol over llama.cpp on ${server.url} (${server.backend.models.length} ` +
      `models, guardrail ${guardrail}${
        memoryBudget === null ? "" : `, budget ${memoryBudget} bytes`
      })\nhint: lmstrix finds it only when told: --server ${server.url}`,
  );
  await new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGINT", resolve);
    if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", resolve);
  });
  await server.close();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

/**
 * `deno task emulator`: runs the LM Studio emulator until SIGINT/SIGTERM.
 *
 * It takes a free port unless told otherwise, so that it never sits on LM Studio's own (1234),
 * and prints the address to pass as `--server`: LMStrix's discovery does not adopt it by itself.
 *
 * @module
 */

import type { ModelProfile } from "./profile.ts";
import { CANCEL_HOLD_MS, startEmulator } from "./server.ts";
import { DEMO_FLEET_URL, readProfilesFile } from "./validation.ts";

const USAGE = `Usage: deno task emulator [--port N] [--profiles FILE] [--time-scale X]
                          [--cancel-hold MS]

  --port N         TCP port on 127.0.0.1 (default 0: a free port)
  --profiles FILE  profiles JSON { "models": [...] } (default scripts/demo_fleet.json)
  --time-scale X   sleep X real ms per virtual ms (default 0: answer at once), so that
                   lmstrix measures the emulator's load and prefill costs on its own clock
  --cancel-hold MS real ms an unpaced load waits after its first progress for a cancel
                   (default ${CANCEL_HOLD_MS}; 0: none), so that lmstrix's checks can stop it`;

/** The numeric flags: each from 0 to its maximum, as the error message says. */
const NUMBER_FLAGS = {
  "--port": { integer: true, max: 65535, text: "an integer from 0 to 65535" },
  "--time-scale": { integer: false, max: 10, text: "a number from 0 to 10" },
  "--cancel-hold": { integer: true, max: 10_000, text: "an integer from 0 to 10000" },
} as const;

async function main(args: string[]): Promise<number> {
  let port = 0;
  let timeScale = 0;
  let cancelHoldMs = CANCEL_HOLD_MS;
  let profilesPath: string | URL = DEMO_FLEET_URL;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [flag, inline] = arg?.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = () => inline ?? args[++i];
    if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      return 0;
    } else if (flag === "--port" || flag === "--time-scale" || flag === "--cancel-hold") {
      const rule = NUMBER_FLAGS[flag];
      const parsed = Number(value());
      const whole = !rule.integer || Number.isInteger(parsed);
      if (!Number.isFinite(parsed) || !whole || parsed < 0 || parsed > rule.max) {
        console.error(`error: ${flag} must be ${rule.text}\n\n${USAGE}`);
        return 2;
      }
      if (flag === "--port") port = parsed;
      else if (flag === "--time-scale") timeScale = parsed;
      else cancelHoldMs = parsed;
    } else if (flag === "--profiles") {
      const path = value();
      if (path === undefined) {
        console.error(`error: --profiles needs a file\n\n${USAGE}`);
        return 2;
      }
      profilesPath = path;
    } else {
      console.error(`error: unknown argument "${arg}"\n\n${USAGE}`);
      return 2;
    }
  }
  let profiles: ModelProfile[];
  try {
    profiles = await readProfilesFile(profilesPath);
  } catch (error) {
    console.error(`error: cannot read profiles: ${(error as Error).message}`);
    return 2;
  }
  let emulator;
  try {
    emulator = await startEmulator({ profiles, port, timeScale, cancelHoldMs });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    console.error(
      `error: port ${port} is already in use (LM Studio itself, or another emulator)\n` +
        "hint: leave out --port to take a free one",
    );
    return 1;
  }
  console.log(`LM Studio emulator listening on ${emulator.url}`);
  console.error(`hint: lmstrix finds it only when told: --server ${emulator.url}`);
  const stopped = new Promise<void>((resolve) => {
    const stop = () => resolve();
    Deno.addSignalListener("SIGINT", stop);
    if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);
  });
  await stopped;
  await emulator.close();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

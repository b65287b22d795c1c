/**
 * `deno task demo`: the main job end to end with no LM Studio. Starts the LM Studio emulator with
 * the demo fleet on a free port, then runs the real CLI (`deno run` with the shared permission
 * flags, as `deno task start` does) for `scan`, `test --all`, `list` and `apply --all --dry-run`
 * against it, in a fresh LM Studio home under `.demo/`. The home starts with one per-model config
 * file, as if its user had set a context length and a KV-cache type in LM Studio, so the dry run
 * shows a current value being replaced. Then it sets the results beside the profiles' known
 * truth, and ends by writing the fleet's report page (`lmstrix report`) and printing its path.
 *
 * Usage: deno task demo [--keep-going]
 */

import { profileTruth } from "./emulator/profile.ts";
import { DEMO_FLEET_URL, readProfilesFile } from "./emulator/validation.ts";
import { CANCEL_HOLD_MS, startEmulator } from "./emulator/server.ts";

const root = new URL("../", import.meta.url);
const home = new URL(".demo/", root);
const flags = (await Deno.readTextFile(new URL("scripts/permissions.flags", root))).trim().split(
  /\s+/,
);

await Deno.remove(home, { recursive: true }).catch(() => {});
await Deno.mkdir(home, { recursive: true });

const profiles = await readProfilesFile(DEMO_FLEET_URL);
// One model the user had already configured in LM Studio: the declared 128k, q8_0 KV cache.
const configured = profiles.find((p) => p.modelKey === "mistral-nemo-instruct-2407");
let configuredFile: URL | undefined;
let configuredText = "";
if (configured) {
  const file = configuredFile = new URL(
    `.internal/user-concrete-model-default-config/${configured.path}.json`,
    home,
  );
  await Deno.mkdir(new URL(".", file), { recursive: true });
  configuredText = JSON.stringify({
    preset: "",
    operation: { fields: [] },
    load: {
      fields: [
        { key: "llm.load.contextLength", value: 131072 },
        { key: "llm.load.llama.kCacheQuantizationType", value: { checked: true, value: "q8_0" } },
      ],
    },
  });
  await Deno.writeTextFile(file, configuredText);
}
const emulator = await startEmulator({ profiles, port: 0, cancelHoldMs: CANCEL_HOLD_MS });
console.log(`LM Studio emulator with ${profiles.length} demo models on ${emulator.url}`);
console.log(`LM Studio home for this demo: ${home.pathname}\n`);

async function lmstrix(...args: string[]): Promise<number> {
  console.log(`$ lmstrix ${args.join(" ")}`);
  const child = new Deno.Command("deno", {
    args: ["run", ...flags, new URL("main.ts", root).pathname, ...args],
    env: { LMSTRIX_SERVER: emulator.url, LMSTRIX_LMSTUDIO_DIR: home.pathname },
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const { code } = await child.status;
  console.log(code === 0 ? "" : `(exit code ${code})\n`);
  return code;
}

let failed = false;
try {
  for (
    const args of [["scan"], ["test", "--all"], ["list"], ["apply", "--all", "--dry-run"]]
  ) {
    const code = await lmstrix(...args);
    // A fleet model that loads at no size is failed, as it should be: test --all then exits 1.
    const nowhere = profiles.some((p) => p.type === "llm" && profileTruth(p).loadable === 0);
    if (code !== (args[0] === "test" && nowhere ? 1 : 0)) failed = true;
  }

  // The dry run must have left the user's config file as it was.
  if (configuredFile && (await Deno.readTextFile(configuredFile)) !== configuredText) {
    console.log("apply --dry-run changed a config file: it must write nothing");
    failed = true;
  }

  // The registry against the truth the emulator's profiles hold.
  const registry = JSON.parse(await Deno.readTextFile(new URL("lmstrix/models.json", home))) as {
    models: Record<
      string,
      { loadableContext: number | null; workingContext: number | null; precision?: number }
    >;
  };
  const stats = emulator.stats();
  console.log(
    "Against the emulator's truth (working may pass it by the 64-token reserve):",
  );
  const rows = [["model", "loadable", "truth", "working", "truth", "ok"]];
  let wrong = 0;
  for (const profile of profiles) {
    if (profile.type !== "llm") continue;
    const truth = profileTruth(profile);
    const record = registry.models[profile.modelKey];
    const precision = record?.precision ?? 256;
    // A truth of 0 means the model loads at no size: its limits must be null.
    const none = truth.loadable === 0 && record !== undefined && record.loadableContext === null &&
      record.workingContext === null;
    const okLoadable = none || record?.loadableContext != null &&
        record.loadableContext <= truth.loadable &&
        record.loadableContext >= truth.loadable - precision;
    const okWorking = none || record?.workingContext != null &&
        record.workingContext <= truth.working + 64 &&
        record.workingContext >= truth.workingFloor - precision;
    if (!okLoadable || !okWorking) wrong++;
    rows.push([
      profile.modelKey,
      String(record?.loadableContext ?? "-"),
      String(truth.loadable),
      String(record?.workingContext ?? "-"),
      truth.workingFloor === truth.working
        ? String(truth.working)
        : `${truth.workingFloor}..${truth.working}`,
      okLoadable && okWorking ? "yes" : "NO",
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) {
    console.log(
      "  " +
        row.map((cell, i) => i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)).join(
          "  ",
        ),
    );
  }
  console.log(
    `\n${stats.loads.length} loads, ${stats.predictions.length} predictions, ` +
      `${(stats.virtualMs / 60_000).toFixed(1)} min of emulated LM Studio time;\n` +
      `${stats.loaded.length} model(s) left loaded.`,
  );
  if (wrong > 0 || stats.loaded.length > 0) failed = true;
  const reportFile = new URL("lmstrix-report.html", home).pathname;
  if ((await lmstrix("report", "--out", reportFile)) !== 0) failed = true;
  console.log(
    `\nTry more (with LMSTRIX_LMSTUDIO_DIR=${home.pathname}):\n` +
      `  deno task -q start show mistral-nemo\n` +
      `  deno task -q start apply --all      (writes the dry run's values)\n` +
      `  deno task -q start apply --undo --all`,
  );
} finally {
  await emulator.close();
}
Deno.exitCode = failed ? 1 : 0;

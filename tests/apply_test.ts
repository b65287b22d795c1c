/**
 * `apply` and `apply --undo` on fixture LM Studio homes that the tests build: config files with
 * the user's other settings, a missing file, a malformed one, one of unknown shape, a nested model
 * path with spaces and unicode, a read-only directory. Checked byte for byte: other fields and
 * their order survive, undo restores, a dry run writes nothing, an interrupted apply leaves every
 * file old or new. Library calls run in this process; the CLI runs as users run it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import {
  InterruptedError,
  LMStrix,
  LockHeldError,
  ModelNotFoundError,
  UsageError,
} from "../mod.ts";
import type { ApplyEntry } from "../mod.ts";
import { parseConfig, setContextLength, skeletonConfig } from "../src/apply/lmstudio_config.ts";
import { contextWithMargin, parseMargin } from "../src/apply/margin.ts";
import { applyPaths, loadApplied } from "../src/apply/applied_store.ts";
import { lmstrixPaths } from "../src/paths.ts";
import { acquireLock } from "../src/registry/lock.ts";
import { buildApplyHome, configFile, type FixtureModel } from "./support/apply_home.ts";
import { cliCommand, runCli, tempHome } from "./support/cli.ts";

/** The keys of one `apply --json` entry, in the contract's order. */
const APPLY_KEYS = ["id", "file", "previous", "contextLength", "action", "reason"];

/**
 * A config with the user's other settings around the context length, written the way no JSON
 * serializer would write it back (an escaped "é", "0.750"), so only an edit in place keeps it.
 */
const WITH_SETTINGS = `{
  "preset": "my long-context pr\\u00e9set",
  "operation": {
    "fields": [
      {
        "key": "llm.prediction.temperature",
        "value": 0.6
      }
    ]
  },
  "load": {
    "fields": [
      {
        "key": "llm.load.llama.kCacheQuantizationType",
        "value": {
          "checked": true,
          "value": "q8_0"
        }
      },
      {
        "key": "llm.load.contextLength",
        "value": 131072
      },
      {
        "key": "llm.load.llama.flashAttention",
        "value": true
      },
      {
        "key": "llm.load.gpu.offloadRatio",
        "value": 0.750
      }
    ]
  }
}
`;

/** A one-line config with settings but no context length. */
const NO_CONTEXT =
  `{"preset":"","operation":{"fields":[]},"load":{"fields":[{"key":"llm.load.llama.flashAttention","value":true},{"key":"llm.load.numExperts","value":4}]}}`;

/** Not JSON: a user's half-finished edit. */
const MALFORMED = `{"preset":"","load":{"fields":[{"key":"llm.load.contextLength","value":4096},]`;

/** Valid JSON, but not a shape LMStrix knows. */
const UNKNOWN_SHAPE = `{"load":{"fields":{"llm.load.contextLength":4096}}}\n`;

/** The fixture fleet: one model for each case the issue names. */
const FLEET: FixtureModel[] = [
  {
    id: "settings-model",
    path: "lmstudio-community/Settings-GGUF/Settings-Q4_K_M.gguf",
    status: "tested",
    working: 18_722,
    config: WITH_SETTINGS,
  },
  {
    id: "no-context-model",
    path: "lmstudio-community/NoContext-GGUF/NoContext-Q8_0.gguf",
    status: "tested",
    working: 32_768,
    config: NO_CONTEXT,
  },
  {
    id: "missing-config-model",
    path: "publisher/Missing-GGUF/Missing-Q4_K_M.gguf",
    status: "tested",
    working: 45_000,
  },
  {
    id: "nested-unicode-model",
    path: "Ünïcode Pub/Mödel with spaces — 7B/mödel Q4.gguf",
    status: "tested",
    working: 9_871,
  },
  {
    id: "malformed-model",
    path: "publisher/Malformed-GGUF/Malformed.gguf",
    status: "tested",
    working: 12_000,
    config: MALFORMED,
  },
  {
    id: "unknown-shape-model",
    path: "publisher/Odd-GGUF/Odd.gguf",
    status: "tested",
    working: 12_000,
    config: UNKNOWN_SHAPE,
  },
  { id: "untested-model", path: "publisher/Untested/u.gguf", status: "untested", working: null },
  { id: "failed-model", path: "publisher/Failed/f.gguf", status: "failed", working: null },
  {
    id: "embedding-model",
    path: "nomic-ai/embed/embed.gguf",
    status: "untested",
    working: null,
    type: "embedding",
  },
];

/** Builds the registry and the config files of `fleet` in `home`. */
function buildHome(home: string, fleet: FixtureModel[] = FLEET): Promise<void> {
  return buildApplyHome(home, fleet);
}

/** Every file and directory under `dir`, with the bytes of each file, for exact comparisons. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const walk = async (at: string, rel: string) => {
    for await (const entry of Deno.readDir(at)) {
      const path = join(at, entry.name);
      const name = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory) {
        found.set(name + "/", "dir");
        await walk(path, name);
      } else {
        const bytes = await Deno.readFile(path);
        found.set(name, Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""));
      }
    }
  };
  await walk(dir, "");
  return found;
}

/** The LM Studio config tree of a home (what apply changes), as a snapshot. */
function configSnapshot(home: string): Promise<Map<string, string>> {
  return snapshot(join(home, ".internal"));
}

function byId(entries: ApplyEntry[]): Map<string, ApplyEntry> {
  return new Map(entries.map((e) => [e.id, e]));
}

Deno.test("the config editor changes only the context length's bytes", async (t) => {
  await t.step("an existing value is replaced in place", () => {
    const edited = setContextLength(WITH_SETTINGS, 18_722);
    assert.equal(edited, WITH_SETTINGS.replace('"value": 131072', '"value": 18722'));
    assert.deepEqual(parseConfig(edited), { ok: true, contextLength: 18_722 });
  });
  await t.step("a missing field is added after the other load fields, in their layout", () => {
    const edited = setContextLength(NO_CONTEXT, 32_768);
    assert.equal(
      edited,
      NO_CONTEXT.replace(
        `"value":4}]`,
        `"value":4},{"key":"llm.load.contextLength","value":32768}]`,
      ),
    );
    const multiLine = WITH_SETTINGS.replace(
      /,\n {6}\{\n {8}"key": "llm.load.contextLength",\n {8}"value": 131072\n {6}\}/,
      "",
    );
    assert.equal(parseConfig(multiLine).ok, true);
    const added = setContextLength(multiLine, 5_000);
    assert.equal(
      added,
      multiLine.replace(
        `"value": 0.750\n      }`,
        `"value": 0.750\n      },\n      {\n        "key": "llm.load.contextLength",\n` +
          `        "value": 5000\n      }`,
      ),
    );
  });
  await t.step("an empty field list gets the one field", () => {
    const text = `{"preset":"","operation":{"fields":[]},"load":{"fields":[]}}`;
    assert.equal(
      setContextLength(text, 4096),
      `{"preset":"","operation":{"fields":[]},"load":{"fields":[{"key":"llm.load.contextLength","value":4096}]}}`,
    );
  });
  await t.step("the skeleton is LM Studio's shape", () => {
    assert.deepEqual(JSON.parse(skeletonConfig(8192)), {
      preset: "",
      operation: { fields: [] },
      load: { fields: [{ key: "llm.load.contextLength", value: 8192 }] },
    });
  });
  await t.step("files that are not strict JSON or of unknown shape are refused", () => {
    for (
      const [text, problem] of [
        [MALFORMED, /not valid JSON/],
        [UNKNOWN_SHAPE, /no "fields" array/],
        ["[]", /not a JSON object/],
        [`{"preset":""}`, /no "load" object/],
        [`{"load":{"fields":[{"key":"llm.load.contextLength","value":"4k"}]}}`, /"4k"/],
        [`{"load":{"fields":[1]}}`, /not an object with a "key"/],
        [`{"load":{"fields":[]},"load":{"fields":[]}}`, /"load" appears twice/],
        [
          `{"load":{"fields":[{"key":"llm.load.contextLength","value":1},` +
          `{"key":"llm.load.contextLength","value":2}]}}`,
          /twice/,
        ],
        [`{"load":{"fields":[]}} // comment`, /not valid JSON/],
      ] as const
    ) {
      const parsed = parseConfig(text);
      assert.equal(parsed.ok, false, text);
      if (!parsed.ok) assert.match(parsed.problem, problem);
      assert.throws(() => setContextLength(text, 4096));
    }
  });
});

Deno.test("margins are tokens or a share of the working context, rounded to the safe side", () => {
  assert.equal(contextWithMargin(18_722, parseMargin("0")), 18_722);
  assert.equal(contextWithMargin(18_722, parseMargin("512")), 18_210);
  assert.equal(contextWithMargin(18_722, parseMargin("1k")), 17_698);
  assert.equal(contextWithMargin(18_722, parseMargin("10%")), 16_849);
  assert.equal(contextWithMargin(1000, parseMargin("7%")), 930);
  for (const bad of ["-5", "abc", "100%", "150%", "1.5", ""]) {
    assert.throws(() => parseMargin(bad), UsageError, bad);
  }
});

Deno.test("apply --all sets tested models, keeps the user's settings and skips the rest", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const lmstrix = new LMStrix({ lmstudioDir: home.path });
  const before = await configSnapshot(home.path);
  const entries = byId(await lmstrix.applyContextLimits("all"));

  const settings = entries.get("settings-model")!;
  assert.deepEqual(
    { ...settings, failed: undefined },
    {
      id: "settings-model",
      file: configFile(home.path, FLEET[0]!.path),
      previous: 131_072,
      contextLength: 18_722,
      action: "set",
      reason: null,
      failed: undefined,
    },
  );
  assert.equal(
    await Deno.readTextFile(settings.file!),
    WITH_SETTINGS.replace('"value": 131072', '"value": 18722'),
  );

  const noContext = entries.get("no-context-model")!;
  assert.equal(noContext.action, "set");
  assert.equal(noContext.previous, null);
  const written = JSON.parse(await Deno.readTextFile(noContext.file!));
  assert.deepEqual(written.load.fields, [
    { key: "llm.load.llama.flashAttention", value: true },
    { key: "llm.load.numExperts", value: 4 },
    { key: "llm.load.contextLength", value: 32_768 },
  ]);

  for (const id of ["missing-config-model", "nested-unicode-model"]) {
    const entry = entries.get(id)!;
    assert.equal(entry.action, "set", id);
    assert.equal(entry.previous, null);
    assert.equal(await Deno.readTextFile(entry.file!), skeletonConfig(entry.contextLength!));
  }
  assert.ok(entries.get("nested-unicode-model")!.file!.includes("Mödel with spaces — 7B"));

  for (
    const [id, problem] of [["malformed-model", /not valid JSON/], [
      "unknown-shape-model",
      /shape|fields/,
    ]] as const
  ) {
    const entry = entries.get(id)!;
    assert.equal(entry.action, "skipped", id);
    assert.equal(entry.failed, true);
    assert.match(entry.reason!, problem);
    assert.equal(await Deno.readTextFile(entry.file!), FLEET.find((m) => m.id === id)!.config);
  }
  assert.match(entries.get("untested-model")!.reason!, /not tested/);
  assert.match(entries.get("failed-model")!.reason!, /test failed: It did not load/);
  assert.match(entries.get("embedding-model")!.reason!, /embedding/);
  for (const id of ["untested-model", "failed-model", "embedding-model"]) {
    assert.equal(entries.get(id)!.action, "skipped");
    assert.equal(entries.get(id)!.failed, false);
  }
  // Nothing else in LM Studio's tree changed: only the four set files are new or different.
  const after = await configSnapshot(home.path);
  const changed = [...after.keys()].filter((k) =>
    before.get(k) !== after.get(k) && !k.endsWith("/")
  );
  assert.equal(changed.length, 4);

  // Applying again changes nothing.
  const again = await lmstrix.applyContextLimits("all");
  assert.deepEqual(
    again.filter((e) => e.action === "unchanged").map((e) => e.id).sort(),
    ["missing-config-model", "nested-unicode-model", "no-context-model", "settings-model"],
  );
  assert.deepEqual(await configSnapshot(home.path), after);
});

Deno.test("apply --undo restores every file byte for byte, and removes what it created", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const lmstrix = new LMStrix({ lmstudioDir: home.path });
  const before = await configSnapshot(home.path);
  await lmstrix.applyContextLimits("all", { margin: "10%" });
  // A second apply with another margin must still undo to the first state.
  await lmstrix.applyContextLimits(["settings"], { margin: 512 });
  assert.notDeepEqual(await configSnapshot(home.path), before);

  const undone = byId(await lmstrix.applyContextLimits("all", { undo: true }));
  assert.deepEqual(
    [...undone.values()].map((e) => [e.id, e.action]).sort(),
    [
      ["missing-config-model", "restored"],
      ["nested-unicode-model", "restored"],
      ["no-context-model", "restored"],
      ["settings-model", "restored"],
    ],
  );
  assert.equal(undone.get("settings-model")!.previous, 18_722 - 512);
  assert.equal(undone.get("settings-model")!.contextLength, 131_072);
  assert.equal(undone.get("missing-config-model")!.contextLength, null);
  assert.deepEqual(await configSnapshot(home.path), before);
  assert.deepEqual(Object.keys(loadApplied(applyPaths(lmstrixPaths(home.path))).entries), []);
  assert.deepEqual([...Deno.readDirSync(applyPaths(lmstrixPaths(home.path)).backupsDir)], []);
  // Nothing is left to undo.
  const again = await lmstrix.applyContextLimits("all", { undo: true });
  assert.deepEqual(again, []);
});

Deno.test("apply --undo leaves a file someone changed since, and says so", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const lmstrix = new LMStrix({ lmstudioDir: home.path });
  const [entry] = await lmstrix.applyContextLimits(["settings-model"]);
  const edited = (await Deno.readTextFile(entry!.file!)).replace("q8_0", "q4_0");
  await Deno.writeTextFile(entry!.file!, edited);
  const warnings: string[] = [];
  const [undone] = await lmstrix.applyContextLimits(["settings-model"], {
    undo: true,
    onWarning: (message) => warnings.push(message),
  });
  assert.equal(undone!.action, "skipped");
  assert.equal(undone!.failed, true);
  assert.match(undone!.reason!, /changed since lmstrix applied it/);
  assert.equal(warnings.length, 1);
  assert.equal(await Deno.readTextFile(entry!.file!), edited);
});

Deno.test("a dry run writes nothing, anywhere in the LM Studio home", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const lmstrix = new LMStrix({ lmstudioDir: home.path });
  const before = await snapshot(home.path);
  const planned: ApplyEntry[][] = [];
  const entries = await lmstrix.applyContextLimits("all", {
    dryRun: true,
    onPlan: (plan) => planned.push([...plan]),
  });
  assert.deepEqual(await snapshot(home.path), before);
  assert.deepEqual(planned, [entries]);
  assert.equal(entries.filter((e) => e.action === "set").length, 4);

  await lmstrix.applyContextLimits("all");
  const applied = await snapshot(home.path);
  const undo = await lmstrix.applyContextLimits("all", { undo: true, dryRun: true });
  assert.equal(undo.filter((e) => e.action === "restored").length, 4);
  assert.deepEqual(await snapshot(home.path), applied);
});

Deno.test("an interrupt between two models leaves the first new, the second old, and undo knows", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const lmstrix = new LMStrix({ lmstudioDir: home.path });
  const before = await configSnapshot(home.path);
  const stop = new AbortController();
  const done: string[] = [];
  await assert.rejects(
    lmstrix.applyContextLimits(["settings-model", "no-context-model"], {
      signal: stop.signal,
      onEntry: (entry) => {
        done.push(entry.id);
        stop.abort("SIGINT");
      },
    }),
    InterruptedError,
  );
  assert.deepEqual(done, ["settings-model"]);
  const [first, second] = ["settings-model", "no-context-model"].map((id) =>
    Deno.readTextFileSync(configFile(home.path, FLEET.find((m) => m.id === id)!.path))
  );
  assert.equal(first, setContextLength(WITH_SETTINGS, 18_722));
  assert.equal(second, NO_CONTEXT);
  await lmstrix.applyContextLimits("all", { undo: true });
  assert.deepEqual(await configSnapshot(home.path), before);
});

Deno.test("apply takes the lock, and names unknown models", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const lmstrix = new LMStrix({ lmstudioDir: home.path });
  const lock = await acquireLock(lmstrixPaths(home.path));
  try {
    await assert.rejects(lmstrix.applyContextLimits(["settings-model"]), LockHeldError);
    // A dry run writes nothing and needs no lock.
    const [planned] = await lmstrix.applyContextLimits(["settings-model"], { dryRun: true });
    assert.equal(planned!.action, "set");
  } finally {
    await lock.release();
  }
  await assert.rejects(lmstrix.applyContextLimits(["nemotron"]), ModelNotFoundError);
  await assert.rejects(lmstrix.applyContextLimits([]), UsageError);
});

/**
 * Makes `dir` (inside a fixture home) a directory nothing can be written into. Root writes through
 * permission bits, and the only places that refuse root (sysfs, read-only mounts) are out of reach
 * here, so as root `dir` is a symbolic link to nowhere: reading under it finds nothing, as in an
 * empty read-only directory, and creating anything under it fails.
 */
async function readOnlyDirectory(dir: string): Promise<void> {
  await Deno.mkdir(dirname(dir), { recursive: true });
  if (Deno.uid() === 0) {
    await Deno.symlink(join(dir, "..", "nowhere", "at-all"), dir);
  } else {
    await Deno.mkdir(dir);
    await Deno.chmod(dir, 0o555);
  }
}

Deno.test("apply on the command line: table on stdout, reminder on stderr, exit 1 for a malformed file", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const run = await runCli(["apply", "--all"], { home: home.path });
  assert.equal(run.code, 1, run.stderr);
  const lines = run.stdout.trimEnd().split("\n");
  assert.match(lines[0]!, /^model +current +new +action$/);
  assert.match(run.stdout, /\nsettings-model +131,072 +18,722 +set\n/);
  assert.match(run.stdout, /\nmissing-config-model +- +45,000 +set\n/);
  assert.match(run.stdout, /\nmalformed-model +- +- +skipped\n/);
  assert.match(run.stdout, /\nmalformed-model: left as it is: it is not valid JSON/);
  assert.match(run.stdout, /\nuntested-model: not tested yet\n/);
  for (const line of lines) assert.ok(Array.from(line).length <= 80, line);
  assert.match(run.stderr, /keeps its old context until it is reloaded/);
  assert.match(run.stderr, /2 config files were left as they were/);
  assert.equal(
    await Deno.readTextFile(configFile(home.path, "publisher/Malformed-GGUF/Malformed.gguf")),
    MALFORMED,
  );
});

Deno.test("apply --json prints one document with the contract's keys", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const run = await runCli(["apply", "--all", "--json", "--margin", "1k"], { home: home.path });
  assert.equal(run.code, 1);
  const document = JSON.parse(run.stdout) as { applied: Record<string, unknown>[] };
  assert.equal(document.applied.length, FLEET.length);
  for (const entry of document.applied) {
    assert.deepEqual(Object.keys(entry), APPLY_KEYS);
    assert.ok(["set", "unchanged", "restored", "skipped"].includes(String(entry.action)));
  }
  const settings = document.applied.find((e) => e.id === "settings-model")!;
  assert.deepEqual(settings, {
    id: "settings-model",
    file: configFile(home.path, FLEET[0]!.path),
    previous: 131_072,
    contextLength: 18_722 - 1024,
    action: "set",
    reason: null,
  });
  const undo = await runCli(["apply", "--undo", "--all", "--json"], { home: home.path });
  assert.equal(undo.code, 0, undo.stderr);
  const restored = JSON.parse(undo.stdout) as { applied: Record<string, unknown>[] };
  assert.deepEqual(
    restored.applied.map((e) => [e.id, e.action, e.previous, e.contextLength]),
    [
      ["missing-config-model", "restored", 45_000 - 1024, null],
      ["nested-unicode-model", "restored", 9_871 - 1024, null],
      ["no-context-model", "restored", 32_768 - 1024, null],
      ["settings-model", "restored", 18_722 - 1024, 131_072],
    ],
  );
});

Deno.test("apply --dry-run prints the plan and leaves the home as it was", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const before = await snapshot(home.path);
  const run = await runCli(["apply", "--all", "--dry-run"], { home: home.path });
  assert.match(run.stdout, /\nsettings-model +131,072 +18,722 +would set\n/);
  assert.match(run.stderr, /Dry run: nothing was written; 4 config files would change/);
  assert.deepEqual(await snapshot(home.path), before);
});

Deno.test("bad input to apply exits 2 and writes nothing", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const before = await snapshot(home.path);
  for (
    const [args, message] of [
      [["apply", "settings-model", "--margin", "12x"], /Cannot read the margin "12x"/],
      [["apply", "settings-model", "--all"], /not both/],
      [["apply"], /Name the models to apply/],
      [["apply", "--undo", "--all", "--margin", "5%"], /--margin has no meaning with --undo/],
      [["apply", "nemotron"], /No model matches "nemotron"/],
    ] as const
  ) {
    const run = await runCli([...args], { home: home.path });
    assert.equal(run.code, 2, args.join(" "));
    assert.match(run.stderr, message);
    assert.equal(run.stdout, "");
  }
  assert.deepEqual(await snapshot(home.path), before);
});

Deno.test("a read-only directory is reported with exit 1; the other models are applied", async () => {
  await using home = await tempHome();
  const fleet: FixtureModel[] = [
    FLEET[0]!,
    {
      id: "read-only-model",
      path: "ro-publisher/RO-GGUF/ro.gguf",
      status: "tested",
      working: 7_000,
    },
  ];
  await buildHome(home.path, fleet);
  await readOnlyDirectory(
    join(home.path, ".internal", "user-concrete-model-default-config", "ro-publisher"),
  );
  const run = await runCli(["apply", "--all", "--json"], { home: home.path });
  assert.equal(run.code, 1, run.stderr);
  const entries = (JSON.parse(run.stdout) as { applied: ApplyEntry[] }).applied;
  const readOnly = entries.find((e) => e.id === "read-only-model")!;
  assert.equal(readOnly.action, "skipped");
  // As root no folder is read-only: a dangling link stands in, which is refused as a link.
  const why = Deno.uid() === 0 ? "its folder .* is a symbolic link" : "cannot write it";
  assert.match(readOnly.reason!, new RegExp(why));
  assert.match(run.stderr, new RegExp(`Left ".*ro\\.gguf\\.json" as it is: ${why}`));
  assert.equal(entries.find((e) => e.id === "settings-model")!.action, "set");
  const manifest = loadApplied(applyPaths(lmstrixPaths(home.path)));
  assert.deepEqual(Object.keys(manifest.entries), ["settings-model"]);
  await assert.rejects(Deno.stat(readOnly.file!), Deno.errors.NotFound);
});

Deno.test("apply --undo leaves a file changed since the apply, warns and exits 1", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  assert.equal((await runCli(["apply", "settings"], { home: home.path })).code, 0);
  const file = configFile(home.path, FLEET[0]!.path);
  const edited = (await Deno.readTextFile(file)).replace('"value": 0.750', '"value": 1');
  await Deno.writeTextFile(file, edited);
  const run = await runCli(["apply", "--undo", "settings"], { home: home.path });
  assert.equal(run.code, 1);
  assert.match(run.stderr, /warning: ".*Settings-Q4_K_M\.gguf\.json" it changed since lmstrix/);
  assert.equal(await Deno.readTextFile(file), edited);
});

Deno.test("SIGINT during apply stops between files: each one old or new, and undo restores all", async () => {
  await using home = await tempHome();
  const fleet: FixtureModel[] = Array.from({ length: 120 }, (_, i) => ({
    id: `model-${String(i).padStart(3, "0")}`,
    path: `pub/model-${i}/model-${i}.gguf`,
    status: "tested" as const,
    working: 10_000 + i,
    config: WITH_SETTINGS,
  }));
  await buildHome(home.path, fleet);
  const before = await configSnapshot(home.path);
  const files = fleet.map((m) => configFile(home.path, m.path));
  const child = cliCommand(["apply", "--all"], { home: home.path }).spawn();
  const outputDone = child.output();
  // Interrupt as soon as the first file has changed.
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && Deno.readTextFileSync(files[0]!) === WITH_SETTINGS) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  child.kill("SIGINT");
  const result = await outputDone;
  assert.equal(result.code, 130, new TextDecoder().decode(result.stderr));
  let changed = 0;
  for (const [i, file] of files.entries()) {
    const text = Deno.readTextFileSync(file);
    if (text !== WITH_SETTINGS) {
      changed++;
      assert.equal(text, setContextLength(WITH_SETTINGS, 10_000 + i), file);
    }
  }
  assert.ok(changed >= 1);
  assert.equal((await runCli(["apply", "--undo", "--all"], { home: home.path })).code, 0);
  assert.deepEqual(await configSnapshot(home.path), before);
});

Deno.test("show, list and status say whether the applied value is still the tested one", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const cli = (...args: string[]) => runCli(args, { home: home.path });
  assert.equal((await cli("apply", "settings-model", "no-context-model")).code, 0);
  assert.match(
    (await cli("show", "settings-model")).stdout,
    /applied +18722 in LM Studio's defaults, the tested value/,
  );
  assert.match((await cli("list")).stdout, /\nsettings-model .* tested +yes /);
  const status = JSON.parse((await cli("status", "--json")).stdout);
  assert.equal(status.applied, 2);
  assert.equal(status.appliedStale, 0);

  // A retest moves the working context: the applied value is now stale.
  const paths = lmstrixPaths(home.path);
  const registry = JSON.parse(await Deno.readTextFile(paths.registry));
  registry.models["settings-model"].loadableContext = 20_000;
  registry.models["settings-model"].workingContext = 20_000;
  await Deno.writeTextFile(paths.registry, JSON.stringify(registry));
  const show = await cli("show", "settings-model", "--json");
  assert.deepEqual(
    { ...JSON.parse(show.stdout).applied, appliedAt: undefined },
    {
      contextLength: 18_722,
      current: false,
      workingContext: 18_722,
      margin: "0",
      appliedAt: undefined,
    },
  );
  assert.match(
    (await cli("show", "settings-model")).stdout,
    /from the earlier working 18,722: run "lmstrix apply settings-model" again/,
  );
  assert.match((await cli("list")).stdout, /\nsettings-model .* tested +stale /);
  const listed = JSON.parse((await cli("list", "--json")).stdout).models as Record<
    string,
    unknown
  >[];
  assert.deepEqual(listed.find((m) => m.id === "settings-model")!.applied, {
    contextLength: 18_722,
    current: false,
  });
  assert.equal(listed.find((m) => m.id === "untested-model")!.applied, null);
  assert.match(
    (await cli("status")).stdout,
    /Applied: 2 in LM Studio's defaults, 1 from an earlier test/,
  );

  // Applying again brings it up to date.
  const again = await cli("apply", "settings-model", "--json");
  assert.equal(JSON.parse(again.stdout).applied[0].contextLength, 20_000);
  assert.equal(JSON.parse((await cli("status", "--json")).stdout).appliedStale, 0);
});

Deno.test("list exports CSV and Markdown", async () => {
  await using home = await tempHome();
  await buildHome(home.path, [
    FLEET[0]!,
    { id: 'pipe|and,comma "model"', path: "p/x.gguf", status: "untested", working: null },
  ]);
  assert.equal((await runCli(["apply", "settings-model"], { home: home.path })).code, 0);
  const csv = await runCli(["list", "--format", "csv"], { home: home.path });
  assert.equal(csv.code, 0);
  const lines = csv.stdout.trimEnd().split("\n");
  assert.equal(
    lines[0],
    "id,path,type,status,declaredContext,loadableContext,workingContext,reductionPercent," +
      "testedAt,appliedContextLength,appliedIsCurrent,error",
  );
  assert.equal(
    lines[1],
    `"pipe|and,comma ""model""",p/x.gguf,llm,untested,131072,,,,,,,`,
  );
  assert.equal(
    lines[2],
    `settings-model,${FLEET[0]!.path},llm,tested,131072,18722,18722,85.7,` +
      `2026-11-25T13:44:36.684Z,18722,true,`,
  );
  const md = await runCli(["list", "--format", "markdown"], { home: home.path });
  assert.equal(md.code, 0);
  const rows = md.stdout.trimEnd().split("\n");
  assert.match(
    rows[0]!,
    /^\| model +\| declared \| loadable \| working \| reduction \| status +\| +size \| applied \|$/,
  );
  assert.match(rows[1]!, /^\| :-+ \| -+: \| -+: \| -+: \| -+: \| :-+ \| -+: \| -+: \|$/);
  assert.match(
    rows[2]!,
    /^\| pipe\\\|and,comma "model" +\| +131,072 \| +- \| +- \| +- \| untested +\|/,
  );
  assert.match(
    rows[3]!,
    /^\| settings-model +\| +131,072 \| +18,722 \| +18,722 \| +85\.7% \| tested +\| .* \| +18,722 \|$/,
  );
  const both = await runCli(["list", "--format", "csv", "--json"], { home: home.path });
  assert.equal(both.code, 2);
});

Deno.test("a file that changes between the plan and the write is left as it is", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const lmstrix = new LMStrix({ lmstudioDir: home.path });
  const file = configFile(home.path, FLEET[0]!.path);
  const saved = WITH_SETTINGS.replace("q8_0", "f16");
  const [entry] = await lmstrix.applyContextLimits(["settings-model"], {
    // As if LM Studio saved the model's settings just after the table was printed.
    onPlan: () => Deno.writeTextFileSync(file, saved),
  });
  assert.equal(entry!.action, "skipped");
  assert.equal(entry!.failed, true);
  assert.match(entry!.reason!, /changed while lmstrix was working on it/);
  assert.equal(await Deno.readTextFile(file), saved);
  assert.deepEqual(Object.keys(loadApplied(applyPaths(lmstrixPaths(home.path))).entries), []);
});

Deno.test("a model whose path changed since the apply must be undone first", async () => {
  await using home = await tempHome();
  await buildHome(home.path);
  const lmstrix = new LMStrix({ lmstudioDir: home.path });
  const before = await configSnapshot(home.path);
  await lmstrix.applyContextLimits(["settings-model"]);
  const paths = lmstrixPaths(home.path);
  const registry = JSON.parse(await Deno.readTextFile(paths.registry));
  registry.models["settings-model"].path = "lmstudio-community/Settings-GGUF/Settings-Q8_0.gguf";
  await Deno.writeTextFile(paths.registry, JSON.stringify(registry));
  const [moved] = await lmstrix.applyContextLimits(["settings-model"]);
  assert.equal(moved!.action, "skipped");
  assert.match(moved!.reason!, /path changed .* apply --undo settings-model" first/);
  const [undone] = await lmstrix.applyContextLimits(["settings-model"], { undo: true });
  assert.equal(undone!.action, "restored");
  assert.deepEqual(await configSnapshot(home.path), before);
});

Deno.test("apply on an empty registry says what to run first and writes nothing", async () => {
  await using home = await tempHome();
  const run = await runCli(["apply", "--all"], { home: home.path });
  assert.equal(run.code, 0);
  assert.equal(run.stdout, "");
  assert.match(run.stderr, /registry is empty: run "lmstrix scan" and "lmstrix test --all" first/);
  const undo = await runCli(["apply", "--undo", "--all"], { home: home.path });
  assert.equal(undo.code, 0);
  assert.match(undo.stderr, /Nothing to undo/);
  assert.deepEqual(
    [...Deno.readDirSync(home.path)].map((e) => e.name).filter((n) => n !== "lmstrix"),
    [],
  );
});

Deno.test("the apply table escapes control characters in model ids and fits 80 columns", async () => {
  await using home = await tempHome();
  const long = "lmstudio-community/an-extremely-long-model-name-that-would-not-fit-Q4_K_M";
  await buildHome(home.path, [
    { id: "evil\x1b[2Jmodel", path: "p/evil.gguf", status: "tested", working: 4_096 },
    { id: long, path: "p/long.gguf", status: "tested", working: 8_192 },
  ]);
  const run = await runCli(["apply", "--all", "--dry-run"], { home: home.path });
  assert.equal(run.code, 0, run.stderr);
  assert.ok(!run.stdout.includes("\x1b"));
  assert.match(run.stdout, /\nevil\\x1b\[2Jmodel +- +4,096 +would set\n/);
  assert.match(run.stdout, /\nlmstudio-community\/an-extr.*….*fit-Q4_K_M +- +8,192 +would set\n/);
  for (const line of run.stdout.split("\n")) assert.ok([...line].length <= 80, line);
});

Deno.test("a model path that would leave LM Studio's config folder names no file", async () => {
  const { configFileFor } = await import("../src/apply/config_files.ts");
  const dir = "/home/me/.lmstudio/.internal/user-concrete-model-default-config";
  assert.equal(configFileFor(dir, "pub/Model-GGUF/m.gguf"), `${dir}/pub/Model-GGUF/m.gguf.json`);
  for (const bad of ["", "../x.gguf", "pub/../../x", "/etc/passwd", "C:\\x", "pub//x", "a\0b"]) {
    assert.equal(configFileFor(dir, bad), null, JSON.stringify(bad));
  }
  await using home = await tempHome();
  await buildHome(home.path, [
    { id: "escaping-model", path: "../../outside.gguf", status: "tested", working: 4_096 },
  ]);
  const before = await snapshot(home.path);
  const [entry] = await new LMStrix({ lmstudioDir: home.path }).applyContextLimits("all");
  assert.equal(entry!.action, "skipped");
  assert.equal(entry!.failed, true);
  assert.equal(entry!.file, null);
  assert.match(entry!.reason!, /does not name a file in LM Studio's config folder/);
  const after = await snapshot(home.path);
  after.delete("lmstrix/lmstrix.lock");
  assert.deepEqual(after, before);
});

Deno.test("model ids that name Object's own properties are plain ids to apply and undo", async () => {
  await using home = await tempHome();
  await buildHome(home.path, [
    { id: "__proto__", path: "p/proto.gguf", status: "tested", working: 4_096 },
    { id: "constructor", path: "p/constructor.gguf", status: "tested", working: 8_192 },
    { id: "toString", path: "p/to-string.gguf", status: "untested", working: null },
  ]);
  const lmstrix = new LMStrix({ lmstudioDir: home.path });
  const before = await configSnapshot(home.path).catch(() => new Map());
  const applied = await lmstrix.applyContextLimits(["__proto__", "constructor", "toString"]);
  assert.deepEqual(applied.map((e) => [e.id, e.action]), [
    ["__proto__", "set"],
    ["constructor", "set"],
    ["toString", "skipped"],
  ]);
  const manifest = loadApplied(applyPaths(lmstrixPaths(home.path)));
  assert.deepEqual(Object.keys(manifest.entries).sort(), ["__proto__", "constructor"]);
  // Undone one at a time: the folder both files share goes with the last of them.
  const first = await lmstrix.applyContextLimits(["__proto__"], { undo: true });
  const rest = await lmstrix.applyContextLimits(["constructor", "toString"], { undo: true });
  assert.deepEqual([...first, ...rest].map((e) => [e.id, e.action]), [
    ["__proto__", "restored"],
    ["constructor", "restored"],
    ["toString", "skipped"],
  ]);
  assert.deepEqual(await configSnapshot(home.path).catch(() => new Map()), before);
});

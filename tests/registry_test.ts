/**
 * Tests for the registry (models.json), the lmsm.json import and model records.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  AmbiguousModelError,
  ModelNotFoundError,
  RegistryError,
  UsageError,
} from "../src/errors.ts";
import { parseLmsm } from "../src/registry/lmsm_import.ts";
import { type ModelCosts, type ModelRecord, toContractJson } from "../src/registry/model_record.ts";
import {
  emptyRegistry,
  findModel,
  loadRegistry,
  saveRegistry,
  type ScannedModel,
  statusCounts,
} from "../src/registry/registry.ts";
import { upsertScanned } from "../src/registry/scan_merge.ts";
import { RECORD_KEYS } from "./support/contract.ts";
import { record, registryOf, withTempPaths } from "./support/records.ts";

function scanned(id: string, extra: Partial<ScannedModel> = {}): ScannedModel {
  return {
    id,
    path: `publisher/${id}/${id}.gguf`,
    sizeBytes: 1000,
    architecture: "llama",
    declaredContext: 131072,
    type: "llm",
    ...extra,
  };
}

/** A stored record of the same file as `scanned(id)` lists. */
function known(id: string, extra: Partial<ModelRecord> = {}): ModelRecord {
  return record(id, {
    path: `publisher/${id}/${id}.gguf`,
    sizeBytes: 1000,
    declaredContext: 131072,
    ...extra,
  });
}

const NO_CHANGES = { changes: [], invalid: [] };

Deno.test("toContractJson shows exactly the contract's keys in the contract's order", () => {
  const full = record("m", {
    declaredContext: 131072,
    loadableContext: 65536,
    workingContext: 32768,
    status: "tested",
    testedAt: "2025-01-02T03:04:05.000Z",
    displayName: "M",
    search: { low: 1 },
    precision: 512,
    missingSince: null,
  });
  assert.deepEqual(Object.keys(toContractJson(full)), RECORD_KEYS);
  assert.equal(toContractJson(full).workingContext, 32768);
  assert.equal(toContractJson(full).reductionPercent, 75);
  assert.equal(toContractJson(full).displayName, "M");
  assert.equal(
    toContractJson({ ...full, type: "embedding", status: "untested" }).status,
    "skipped",
  );
});

Deno.test("loadRegistry and saveRegistry keep models.json safe", async (t) => {
  await t.step("a missing registry (and no lmsm.json) loads as an empty one", async () => {
    await withTempPaths(async (paths) => {
      const registry = await loadRegistry(paths);
      assert.deepEqual(Object.keys(registry.models), []);
      assert.equal(registry.importedFrom, undefined);
    });
  });

  await t.step("a saved registry loads back equal, models sorted by id", async () => {
    await withTempPaths(async (paths) => {
      const registry = registryOf(
        record("zeta", { search: { trace: [1, 2] }, precision: 256 }),
        record("alpha", { status: "tested", loadableContext: 4096, workingContext: 2048 }),
      );
      await saveRegistry(paths, registry, { now: () => new Date("2025-05-06T07:08:09Z") });
      const text = await Deno.readTextFile(paths.registry);
      const data = JSON.parse(text);
      assert.equal(data.schemaVersion, 1);
      assert.equal(data.updatedAt, "2025-05-06T07:08:09.000Z");
      assert.deepEqual(Object.keys(data.models), ["alpha", "zeta"]);
      assert.ok(text.endsWith("}\n"));
      const loaded = await loadRegistry(paths);
      assert.deepEqual(loaded.models, registry.models);
      assert.equal(loaded.updatedAt, "2025-05-06T07:08:09.000Z");
    });
  });

  await t.step("saving creates the directory and leaves no temp files", async () => {
    await withTempPaths(async (paths) => {
      await saveRegistry(paths, registryOf(record("a")));
      await saveRegistry(paths, registryOf(record("a"), record("b")));
      const names = [...Deno.readDirSync(paths.root)].map((e) => e.name);
      assert.deepEqual(names, ["models.json"]);
    });
  });

  await t.step("unknown keys in the file survive a load and save", async () => {
    await withTempPaths(async (paths) => {
      await Deno.mkdir(paths.root, { recursive: true });
      const stored = { ...record("a"), futureField: { x: 1 } };
      await Deno.writeTextFile(
        paths.registry,
        JSON.stringify({ schemaVersion: 1, updatedAt: null, models: { a: stored }, note: "hi" }),
      );
      const registry = await loadRegistry(paths);
      await saveRegistry(paths, registry);
      const data = JSON.parse(await Deno.readTextFile(paths.registry));
      assert.equal(data.note, "hi");
      assert.deepEqual(data.models.a.futureField, { x: 1 });
    });
  });

  await t.step("a failed save leaves the old file and no temp file", async () => {
    await withTempPaths(async (paths) => {
      await saveRegistry(paths, registryOf(record("a")));
      const before = await Deno.readFile(paths.registry);
      const cyclic = registryOf(record("b"));
      (cyclic.models["b"] as unknown as Record<string, unknown>)["self"] = cyclic;
      await assert.rejects(saveRegistry(paths, cyclic));
      assert.deepEqual(await Deno.readFile(paths.registry), before);
      assert.deepEqual([...Deno.readDirSync(paths.root)].map((e) => e.name), ["models.json"]);
    });
  });

  await t.step("a reader never sees half a file while saves run", async () => {
    await withTempPaths(async (paths) => {
      const big = registryOf(
        ...Array.from({ length: 300 }, (_, i) => record(`model-${i}`, { error: "x".repeat(200) })),
      );
      await saveRegistry(paths, big);
      let reads = 0;
      let saving = true;
      const reader = (async () => {
        while (saving) {
          JSON.parse(await Deno.readTextFile(paths.registry));
          reads++;
        }
      })();
      for (let i = 0; i < 20; i++) await saveRegistry(paths, big);
      saving = false;
      await reader;
      assert.ok(reads > 0);
    });
  });

  const bad: [string, string][] = [
    ["damaged JSON", '{"schemaVersion": 1, "models": {'],
    ["an empty file", ""],
    ["an array", "[]"],
    ["no schemaVersion", '{"models": {}}'],
    ["models that is not an object", '{"schemaVersion": 1, "models": []}'],
    ["a newer schema version", JSON.stringify({ schemaVersion: 2, models: {} })],
  ];
  for (const [what, content] of bad) {
    await t.step(`${what} throws RegistryError and stays byte-identical`, async () => {
      await withTempPaths(async (paths) => {
        await Deno.mkdir(paths.root, { recursive: true });
        await Deno.writeTextFile(paths.registry, content);
        // An lmsm.json next to it must not be imported over a registry that exists.
        await Deno.writeTextFile(paths.lmsm, JSON.stringify({ llms: {} }));
        const before = await Deno.readFile(paths.registry);
        await assert.rejects(loadRegistry(paths), (error: unknown) => {
          assert.ok(error instanceof RegistryError);
          assert.equal(error.path, paths.registry);
          assert.ok(error.message.includes(paths.registry));
          assert.ok((error.hint ?? "").length > 0);
          if (what === "a newer schema version") assert.match(error.message, /version 2/);
          return true;
        });
        assert.deepEqual(await Deno.readFile(paths.registry), before);
        assert.deepEqual(
          [...Deno.readDirSync(paths.root)].map((e) => e.name),
          ["models.json"],
        );
      });
    });
  }
});

Deno.test("loadRegistry imports lmsm.json when no registry exists yet", async (t) => {
  const lmsm = {
    path: "/lms",
    llms: {
      "plain-old": {
        id: "plain-old",
        path: "/lms/models/a/plain.gguf",
        size_bytes: 4000,
        ctx_in: 32768,
        ctx_out: 4096,
        has_tools: false,
        has_vision: false,
        failed: false,
        error_msg: "",
      },
      "was-tested": {
        id: "was-tested",
        path: "/lms/models/b.gguf",
        size_bytes: 5000,
        ctx_in: 131072,
        ctx_out: 4096,
        tested_max_context: 30000,
        loadable_max_context: 65536,
        context_test_status: "completed",
        context_test_date: "2025-07-20T12:34:56.123456",
      },
      "was-failed": {
        id: "was-failed",
        path: "",
        size_bytes: 0,
        ctx_in: 0,
        ctx_out: 0,
        failed: true,
        error_msg: "Model not found",
      },
      "was-interrupted": {
        id: "was-interrupted",
        path: "/x",
        size_bytes: 1,
        ctx_in: 8192,
        context_test_status: "testing",
        last_known_good_context: 4096,
      },
    },
  };

  await t.step("records come from ctx_in, size_bytes and the old test results", async () => {
    await withTempPaths(async (paths) => {
      await Deno.writeTextFile(paths.lmsm, JSON.stringify(lmsm));
      const registry = await loadRegistry(paths);
      assert.equal(registry.importedFrom, paths.lmsm);
      assert.deepEqual(Object.keys(registry.models).sort(), [
        "plain-old",
        "was-failed",
        "was-interrupted",
        "was-tested",
      ]);
      assert.deepEqual(toContractJson(registry.models["plain-old"]!), {
        id: "plain-old",
        type: "llm",
        path: "/lms/models/a/plain.gguf",
        sizeBytes: 4000,
        architecture: "",
        declaredContext: 32768,
        loadableContext: null,
        workingContext: null,
        reductionPercent: null,
        status: "untested",
        testedAt: null,
        error: null,
        displayName: null,
      });
      const tested = registry.models["was-tested"]!;
      assert.equal(tested.status, "tested");
      assert.equal(tested.declaredContext, 131072);
      assert.equal(tested.workingContext, 30000);
      assert.equal(tested.loadableContext, 65536);
      assert.equal(tested.testedAt, "2025-07-20T12:34:56.123456");
      const failed = registry.models["was-failed"]!;
      assert.equal(failed.status, "failed");
      assert.equal(failed.error, "Model not found");
      assert.equal(registry.models["was-interrupted"]!.status, "untested");
      assert.equal(registry.models["was-interrupted"]!.type, "llm");
    });
  });

  await t.step("the import writes nothing until the registry is saved", async () => {
    await withTempPaths(async (paths) => {
      await Deno.writeTextFile(paths.lmsm, JSON.stringify(lmsm));
      const registry = await loadRegistry(paths);
      await assert.rejects(Deno.stat(paths.registry), Deno.errors.NotFound);
      await saveRegistry(paths, registry);
      const saved = JSON.parse(await Deno.readTextFile(paths.registry));
      assert.equal(saved.importedFrom, undefined);
      assert.equal(saved.models["was-tested"].workingContext, 30000);
      assert.equal((await loadRegistry(paths)).importedFrom, undefined);
    });
  });

  await t.step("an existing registry wins over lmsm.json", async () => {
    await withTempPaths(async (paths) => {
      await Deno.writeTextFile(paths.lmsm, JSON.stringify(lmsm));
      await saveRegistry(paths, registryOf(record("only")));
      assert.deepEqual(Object.keys((await loadRegistry(paths)).models), ["only"]);
    });
  });

  await t.step("a tested entry without a loadable value gets loadable null", () => {
    const [r] = parseLmsm(
      { llms: { m: { ctx_in: 8192, tested_max_context: 4096, context_test_status: "completed" } } },
      "lmsm.json",
    );
    assert.equal(r?.status, "tested");
    assert.equal(r?.workingContext, 4096);
    assert.equal(r?.loadableContext, null);
  });

  await t.step(
    "a damaged lmsm.json throws RegistryError naming it and stays unchanged",
    async () => {
      for (const content of ["{not json", '{"path": "/x"}', '{"llms": {"a": 5}}']) {
        await withTempPaths(async (paths) => {
          await Deno.writeTextFile(paths.lmsm, content);
          await assert.rejects(loadRegistry(paths), (error: unknown) => {
            assert.ok(error instanceof RegistryError);
            assert.equal(error.path, paths.lmsm);
            assert.ok(error.message.includes(paths.lmsm));
            return true;
          });
          assert.equal(await Deno.readTextFile(paths.lmsm), content);
          await assert.rejects(Deno.stat(paths.root), Deno.errors.NotFound);
        });
      }
    },
  );
});

Deno.test("upsertScanned merges a scan into the registry", async (t) => {
  const now = "2025-03-04T05:06:07.000Z";

  await t.step("new models are added untested with the scan's metadata", () => {
    const registry = emptyRegistry();
    const merge = upsertScanned(registry, [
      scanned("b", { displayName: "B", quantization: "Q4_K_M" }),
      scanned("a", { type: "embedding" }),
    ], now);
    assert.deepEqual(merge, { added: ["a", "b"], updated: [], missing: [], ...NO_CHANGES });
    const b = registry.models["b"]!;
    assert.equal(b.status, "untested");
    assert.equal(b.loadableContext, null);
    assert.equal(b.displayName, "B");
    assert.equal(b.quantization, "Q4_K_M");
    assert.equal(registry.models["a"]!.type, "embedding");
  });

  await t.step("known models get fresh metadata and keep their results", () => {
    const registry = registryOf(known("m", {
      status: "tested",
      loadableContext: 65536,
      workingContext: 32768,
      testedAt: now,
      search: { done: true },
      precision: 512,
      displayName: "Old name",
    }));
    const merge = upsertScanned(registry, [scanned("m", { architecture: "qwen2" })], now);
    assert.deepEqual(merge, {
      added: [],
      updated: ["m"],
      missing: [],
      changes: [{ id: "m", what: ["metadata"], stale: false }],
      invalid: [],
    });
    const m = registry.models["m"]!;
    assert.equal(m.architecture, "qwen2");
    assert.equal(m.displayName, undefined);
    assert.equal(m.status, "tested");
    assert.equal(m.workingContext, 32768);
    assert.equal(m.loadableContext, 65536);
    assert.deepEqual(m.search, { done: true });
    assert.equal(m.precision, 512);
  });

  await t.step("an unchanged model is not reported as updated", () => {
    const registry = emptyRegistry();
    upsertScanned(registry, [scanned("m")], now);
    assert.deepEqual(upsertScanned(registry, [scanned("m")], now).updated, []);
  });

  await t.step("vanished models become missing, keep results, and get them back", () => {
    const registry = registryOf(
      known("gone", { status: "tested", workingContext: 1024, loadableContext: 2048 }),
      known("failed-one", { status: "failed", error: "boom" }),
      known("stays"),
    );
    const first = upsertScanned(registry, [scanned("stays")], now);
    assert.deepEqual(first.missing, ["failed-one", "gone"]);
    const gone = registry.models["gone"]!;
    assert.equal(gone.status, "missing");
    assert.equal(gone.missingSince, now);
    assert.equal(gone.workingContext, 1024);

    // Still missing on the next scan: stays missing, keeps its first missingSince.
    const second = upsertScanned(registry, [scanned("stays")], "2030-01-01T00:00:00.000Z");
    assert.deepEqual(second.missing, ["failed-one", "gone"]);
    assert.equal(gone.missingSince, now);
    assert.equal(gone.statusBeforeMissing, "tested");

    const back = upsertScanned(registry, [
      scanned("stays"),
      scanned("gone"),
      scanned("failed-one"),
    ]);
    assert.deepEqual(back.updated, ["failed-one", "gone"]);
    assert.deepEqual(back.changes.map((c) => [c.id, c.what, c.stale]), [
      ["failed-one", ["back in LM Studio"], false],
      ["gone", ["back in LM Studio"], false],
    ]);
    assert.equal(gone.status, "tested");
    assert.equal(gone.workingContext, 1024);
    assert.equal(gone.missingSince, undefined);
    assert.equal(gone.statusBeforeMissing, undefined);
    assert.equal(registry.models["failed-one"]!.status, "failed");
    assert.equal(registry.models["failed-one"]!.error, "boom");
  });

  await t.step("a missing model survives a save and load and still comes back", async () => {
    await withTempPaths(async (paths) => {
      const registry = registryOf(known("m", { status: "tested", workingContext: 5 }));
      upsertScanned(registry, [], now);
      await saveRegistry(paths, registry);
      const loaded = await loadRegistry(paths);
      assert.equal(loaded.models["m"]!.status, "missing");
      upsertScanned(loaded, [scanned("m")], now);
      assert.equal(loaded.models["m"]!.status, "tested");
    });
  });
});

Deno.test("findModel resolves what the user typed to one model", async (t) => {
  const registry = registryOf(
    record("qwen3-8b"),
    record("qwen3-8b-mlx"),
    record("lmstudio-community/gemma-3-12b"),
    record("bartowski/gemma-3-12b-it"),
    record("Llama-3.2-3B-Instruct"),
    record("mistral-7b"),
  );

  const found: [string, string, string][] = [
    ["an exact id", "qwen3-8b", "qwen3-8b"],
    ["an id in another case", "llama-3.2-3b-instruct", "Llama-3.2-3B-Instruct"],
    ["the last part of a publisher/name id", "GEMMA-3-12b", "lmstudio-community/gemma-3-12b"],
    ["a unique part", "mlx", "qwen3-8b-mlx"],
    ["a unique part in another case", "MISTRAL", "mistral-7b"],
    ["a query with spaces around it", "  mistral  ", "mistral-7b"],
  ];
  for (const [what, query, id] of found) {
    await t.step(`${what} finds the model`, () => {
      assert.equal(findModel(registry, query).id, id);
    });
  }

  await t.step("an ambiguous part names every candidate", () => {
    assert.throws(() => findModel(registry, "qwen"), (error: unknown) => {
      assert.ok(error instanceof AmbiguousModelError);
      assert.ok(error instanceof ModelNotFoundError);
      assert.deepEqual(error.candidates, ["qwen3-8b", "qwen3-8b-mlx"]);
      assert.match(error.message, /"qwen" is ambiguous/);
      assert.match(error.message, /"qwen3-8b", "qwen3-8b-mlx"/);
      return true;
    });
  });

  await t.step("an ambiguous message names at most 10 candidates", () => {
    const many = registryOf(...Array.from({ length: 14 }, (_, i) => record(`m-${i}`)));
    assert.throws(() => findModel(many, "m-"), (error: unknown) => {
      assert.ok(error instanceof AmbiguousModelError);
      assert.equal(error.candidates.length, 14);
      assert.match(error.message, /and 4 more$/);
      return true;
    });
  });

  await t.step("an unknown name throws ModelNotFoundError with near misses", () => {
    assert.throws(() => findModel(registry, "mistrl-7b"), (error: unknown) => {
      assert.ok(error instanceof ModelNotFoundError);
      assert.ok(!(error instanceof AmbiguousModelError));
      assert.deepEqual(error.candidates, ["mistral-7b"]);
      assert.match(error.message, /No model matches "mistrl-7b"; did you mean "mistral-7b"\?/);
      assert.ok((error.hint ?? "").length > 0);
      return true;
    });
  });

  await t.step("an unknown name far from every id suggests nothing", () => {
    assert.throws(() => findModel(registry, "zzzzzzzzzz"), (error: unknown) => {
      assert.ok(error instanceof ModelNotFoundError);
      assert.deepEqual(error.candidates, []);
      return true;
    });
  });

  await t.step("an empty name is a usage error", () => {
    assert.throws(() => findModel(registry, "  "), UsageError);
  });
});

Deno.test("statusCounts counts present LLMs by status, missing and embeddings apart", () => {
  const registry = registryOf(
    record("a"),
    record("b", { status: "testing" }),
    record("c", { status: "tested" }),
    record("d", { status: "tested" }),
    record("e", { status: "failed" }),
    record("f", { status: "missing" }),
    record("g", { type: "embedding" }),
  );
  assert.deepEqual(statusCounts(registry), {
    total: 5,
    untested: 1,
    testing: 1,
    tested: 2,
    failed: 1,
    missing: 1,
    embeddings: 1,
  });
});

Deno.test("one damaged record is quarantined, not the whole registry", async (t) => {
  const damagedRecords: [string, unknown, RegExp][] = [
    ["a record of the wrong shape", { id: "bad" }, /"path"/],
    ["a record whose id differs from its key", record("other"), /"id" "other"/],
    ["an unknown status", record("bad", { status: "odd" as "tested" }), /"status"/],
    ["a size of -1", record("bad", { sizeBytes: -1 }), /"sizeBytes"/],
    ["a context beyond 2^53", record("bad", { declaredContext: 2 ** 53 + 2 }), /"declaredContext"/],
    [
      "a working context above the loadable one",
      record("bad", { status: "tested", loadableContext: 4096, workingContext: 8192 }),
      /"workingContext" 8192 above its "loadableContext" 4096/,
    ],
    [
      "a loadable context above the declared one",
      record("bad", { declaredContext: 8192, loadableContext: 2 ** 53 - 1, workingContext: 1 }),
      /"loadableContext" 9007199254740991 above its "declaredContext" 8192/,
    ],
    [
      "a declared context no model has",
      record("bad", { declaredContext: 2 ** 53 - 1 }),
      /"declaredContext" that is not/,
    ],
    ["costs that are text", record("bad", { costs: "x" as unknown as ModelCosts }), /"costs"/],
    [
      "a display name that is a number",
      record("bad", { displayName: 5 as unknown as string }),
      /"displayName"/,
    ],
    [
      "a precision that is text",
      record("bad", { precision: "x" as unknown as number }),
      /"precision"/,
    ],
    [
      "a missingSince that is a number",
      record("bad", { missingSince: 5 as unknown as string }),
      /"missingSince"/,
    ],
  ];
  for (const [what, bad, problem] of damagedRecords) {
    await t.step(
      `${what}: the others load, it is named, and saving keeps it as it was`,
      async () => {
        await withTempPaths(async (paths) => {
          await Deno.mkdir(paths.root, { recursive: true });
          const content = JSON.stringify({
            schemaVersion: 1,
            updatedAt: null,
            models: { bad, good: record("good") },
          });
          await Deno.writeTextFile(paths.registry, content);
          const registry = await loadRegistry(paths);
          assert.deepEqual(Object.keys(registry.models), ["good"]);
          assert.match(registry.quarantined!["bad"]!.problem, problem);
          await saveRegistry(paths, registry);
          const saved = JSON.parse(await Deno.readTextFile(paths.registry));
          assert.deepEqual(saved.models.bad, bad, "the damaged record is written back unchanged");
          // A scan that finds the model replaces it with a good record.
          const again = await loadRegistry(paths);
          upsertScanned(again, [scanned("bad"), scanned("good")]);
          await saveRegistry(paths, again);
          const healed = await loadRegistry(paths);
          assert.equal(healed.quarantined, undefined);
          assert.equal(healed.models["bad"]!.status, "untested");
        });
      },
    );
  }
});

Deno.test("a scan keeps a model LM Studio lists with impossible numbers, failed, and writes nothing the reader rejects", async (t) => {
  const odd: [string, Partial<ScannedModel>, RegExp][] = [
    ["size -1", { sizeBytes: -1 }, /size as -1/],
    ["context 2^53+2", { declaredContext: 2 ** 53 + 2 }, /context length as 9007199254740994/],
    ["context 1e308", { declaredContext: 1e308 }, /context length as 1e\+308/],
    ["context -5", { declaredContext: -5 }, /context length as -5/],
    ["context 0", { declaredContext: 0 }, /context length as 0/],
  ];
  for (const [what, extra, reason] of odd) {
    await t.step(what, async () => {
      await withTempPaths(async (paths) => {
        const registry = emptyRegistry();
        const merge = upsertScanned(registry, [scanned("odd", extra), scanned("fine")]);
        assert.deepEqual(merge.invalid.map((i) => i.id), ["odd"]);
        assert.match(merge.invalid[0]!.problem, reason);
        const stored = registry.models["odd"]!;
        assert.equal(stored.status, "failed");
        assert.match(String(stored.error), reason);
        await saveRegistry(paths, registry);
        const loaded = await loadRegistry(paths);
        assert.equal(loaded.quarantined, undefined, "the reader takes every record");
        assert.equal(loaded.models["odd"]!.status, "failed");
        assert.equal(loaded.models["fine"]!.status, "untested");
        // Listed properly again: untested, the reason gone.
        upsertScanned(loaded, [scanned("odd"), scanned("fine")]);
        assert.equal(loaded.models["odd"]!.status, "untested");
        assert.equal(loaded.models["odd"]!.error, null);
      });
    });
  }
});

Deno.test("a changed file makes a tested model's results stale, and untested again", () => {
  const registry = registryOf(known("m", {
    status: "tested",
    loadableContext: 45_000,
    workingContext: 30_000,
    testedAt: "2025-01-01T00:00:00.000Z",
    quantization: "Q4_K_M",
    cappedAt: 45_000,
  }));
  const merge = upsertScanned(registry, [
    scanned("m", { path: "publisher/m/m-Q5_K_M.gguf", quantization: "Q5_K_M", sizeBytes: 1200 }),
  ], "2025-02-02T00:00:00.000Z");
  assert.deepEqual(merge.updated, ["m"]);
  assert.deepEqual(merge.changes[0]!.what, [
    "path publisher/m/m.gguf -> publisher/m/m-Q5_K_M.gguf",
    "size 1000 -> 1200 bytes",
    "quantization Q4_K_M -> Q5_K_M",
  ]);
  assert.equal(merge.changes[0]!.stale, true);
  const m = registry.models["m"]!;
  assert.equal(m.status, "untested");
  assert.equal(m.loadableContext, null);
  assert.equal(m.workingContext, null);
  assert.equal(m.cappedAt, undefined);
  assert.deepEqual(m.stale, {
    status: "tested",
    loadableContext: 45_000,
    workingContext: 30_000,
    testedAt: "2025-01-01T00:00:00.000Z",
    since: "2025-02-02T00:00:00.000Z",
  });
});

Deno.test("model ids that are names of Object's properties are ordinary ids", async (t) => {
  const ids = ["constructor", "toString", "valueOf", "hasOwnProperty", "__proto__"];
  await t.step("a scan stores each, a save and a load keep each", async () => {
    await withTempPaths(async (paths) => {
      const registry = emptyRegistry();
      const merge = upsertScanned(registry, ids.map((id) => scanned(id)));
      assert.deepEqual(merge.added, [...ids].sort());
      assert.equal(Object.getPrototypeOf({}), Object.prototype, "nothing assigned onto Object");
      await saveRegistry(paths, registry);
      const loaded = await loadRegistry(paths);
      assert.deepEqual(Object.keys(loaded.models).sort(), [...ids].sort());
      for (const id of ids) assert.equal(loaded.models[id]!.id, id);
    });
  });
  await t.step("findModel finds them, and an empty registry has none of them", () => {
    const registry = registryOf(...ids.map((id) => record(id)));
    for (const id of ids) assert.equal(findModel(registry, id).id, id);
    assert.throws(() => findModel(emptyRegistry(), "constructor"), ModelNotFoundError);
  });
});

Deno.test("a registry that is not JSON is reported by position, never by its content", async () => {
  await withTempPaths(async (paths) => {
    await Deno.mkdir(paths.root, { recursive: true });
    for (const secret of ["SECRET_TOKEN=hunter2", '{"models": {"a": 1,}} SECRET_TOKEN']) {
      await Deno.writeTextFile(paths.registry, secret);
      await assert.rejects(loadRegistry(paths), (error: unknown) => {
        assert.ok(error instanceof RegistryError);
        assert.doesNotMatch(error.message, /SECRET|hunter2/);
        assert.match(error.message, /not valid JSON/);
        return true;
      });
    }
  });
});

/**
 * Start-up benchmark, run by `deno task bench:startup`: how long `lmstrix list --json` takes on a
 * registry of 500 models, next to a bare `deno eval 0`. The target is at most twice as long.
 *
 * It writes a temporary LM Studio home whose registry (`<home>/lmstrix/models.json`, written
 * with `saveRegistry`) holds 500 generated records shaped like a real fleet: several publishers,
 * sizes and quantizations, tested, untested, failed, interrupted and missing models, embedding
 * models. Then it runs each command once to warm Deno's caches (npm packages, transpiled code)
 * and checks that `list --json` shows every model, then times both commands, alternating, and
 * prints the medians and their ratio. lmstrix runs as `deno task start` runs it: `deno run` with
 * the flags of `scripts/permissions.flags`, with `LMSTRIX_LMSTUDIO_DIR` set to the temporary home.
 *
 * Exit code: 0 within the target, 1 outside it or when a run fails.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { lmstrixPaths } from "../src/paths.ts";
import { seededRandom } from "../src/random.ts";
import type { ModelRecord } from "../src/registry/model_record.ts";
import { emptyRegistry, saveRegistry } from "../src/registry/registry.ts";
import { readPermissionFlags } from "./compile_all.ts";

/** Models in the benchmark registry. */
const MODEL_COUNT = 500;
/** Timed runs of each command. */
const RUNS = 10;
/** Untimed runs of each command before timing. */
const WARMUP_RUNS = 2;
/** `list --json` may take at most this many times as long as `deno eval 0`. */
const TARGET_RATIO = 2;

const ROOT = fileURLToPath(new URL("../", import.meta.url));

interface Family {
  publisher: string;
  /** The model's name, with `{p}` where the parameter count goes. */
  name: string;
  architecture: string;
  declaredContext: number;
  params: string[];
  type?: "embedding";
}

const FAMILIES: Family[] = [
  {
    publisher: "lmstudio-community",
    name: "Qwen2.5-{p}-Instruct",
    architecture: "qwen2",
    declaredContext: 32768,
    params: ["0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B"],
  },
  {
    publisher: "lmstudio-community",
    name: "Meta-Llama-3.1-{p}-Instruct",
    architecture: "llama",
    declaredContext: 131072,
    params: ["8B", "70B"],
  },
  {
    publisher: "bartowski",
    name: "Llama-3.2-{p}-Instruct",
    architecture: "llama",
    declaredContext: 131072,
    params: ["1B", "3B"],
  },
  {
    publisher: "lmstudio-community",
    name: "gemma-2-{p}-it",
    architecture: "gemma2",
    declaredContext: 8192,
    params: ["2B", "9B", "27B"],
  },
  {
    publisher: "lmstudio-community",
    name: "gemma-3-{p}-it",
    architecture: "gemma3",
    declaredContext: 131072,
    params: ["1B", "4B", "12B", "27B"],
  },
  {
    publisher: "bartowski",
    name: "Mistral-Nemo-Instruct-2407",
    architecture: "llama",
    declaredContext: 131072,
    params: ["12B"],
  },
  {
    publisher: "bartowski",
    name: "Mistral-Small-{p}-Instruct",
    architecture: "llama",
    declaredContext: 32768,
    params: ["22B", "24B"],
  },
  {
    publisher: "unsloth",
    name: "Phi-4-mini-instruct",
    architecture: "phi3",
    declaredContext: 131072,
    params: ["3.8B"],
  },
  {
    publisher: "unsloth",
    name: "DeepSeek-R1-Distill-Qwen-{p}",
    architecture: "qwen2",
    declaredContext: 131072,
    params: ["1.5B", "7B", "14B", "32B"],
  },
  {
    publisher: "Qwen",
    name: "Qwen3-{p}",
    architecture: "qwen3",
    declaredContext: 40960,
    params: ["0.6B", "1.7B", "4B", "8B", "14B", "32B"],
  },
  {
    publisher: "TheBloke",
    name: "CodeLlama-{p}-Instruct",
    architecture: "llama",
    declaredContext: 16384,
    params: ["7B", "13B", "34B"],
  },
  {
    publisher: "mlx-community",
    name: "Qwen2.5-Coder-{p}-Instruct",
    architecture: "qwen2",
    declaredContext: 32768,
    params: ["1.5B", "7B", "14B", "32B"],
  },
  {
    publisher: "nomic-ai",
    name: "nomic-embed-text-v1.5",
    architecture: "nomic-bert",
    declaredContext: 2048,
    params: ["137M"],
    type: "embedding",
  },
  {
    publisher: "CompendiumLabs",
    name: "bge-large-en-v1.5",
    architecture: "bert",
    declaredContext: 512,
    params: ["335M"],
    type: "embedding",
  },
];

/** Quantizations with their bits per weight, which set the file size. */
const GGUF_QUANTS: [string, number][] = [
  ["Q3_K_L", 4.3],
  ["IQ4_XS", 4.25],
  ["Q4_K_M", 4.85],
  ["Q5_K_M", 5.7],
  ["Q6_K", 6.6],
  ["Q8_0", 8.5],
];
const MLX_QUANTS: [string, number][] = [["4bit", 4.5], ["6bit", 6.5], ["8bit", 8.5]];

/** `count` distinct, realistic model records. */
function makeRecords(count: number): ModelRecord[] {
  // Seeded, so every run benchmarks the same registry.
  const next = seededRandom(20240611);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const records: ModelRecord[] = [];
  const seen = new Set<string>();
  const start = Date.parse("2025-01-06T09:00:00Z");
  while (records.length < count) {
    const family = pick(FAMILIES);
    const params = pick(family.params);
    const format = family.publisher === "mlx-community" ? "safetensors" : "gguf";
    const [quant, bits] = pick(format === "gguf" ? GGUF_QUANTS : MLX_QUANTS);
    const stem = family.name.replace("{p}", params);
    const key = stem.toLowerCase();
    let id = `${key}@${quant.toLowerCase()}`;
    for (let copy = 2; seen.has(id); copy++) id = `${key}-v${copy}@${quant.toLowerCase()}`;
    seen.add(id);
    const billions = Number.parseFloat(params) * (params.endsWith("M") ? 0.001 : 1);
    const declared = family.declaredContext;
    const record: ModelRecord = {
      id,
      path: format === "gguf"
        ? `${family.publisher}/${stem}-GGUF/${stem}-${quant}.gguf`
        : `${family.publisher}/${stem}-${quant}/model.safetensors`,
      sizeBytes: Math.round(billions * 1e9 * bits / 8),
      architecture: family.architecture,
      declaredContext: declared,
      loadableContext: null,
      workingContext: null,
      status: "untested",
      testedAt: null,
      error: null,
      type: family.type ?? "llm",
      displayName: `${stem.replaceAll("-", " ")} ${quant}`,
      format,
      quantization: quant,
      paramsString: params,
    };
    const testedAt = new Date(start + Math.floor(next() * 200 * 86_400_000)).toISOString();
    const roll = next();
    if (record.type === "embedding") {
      // Never tested: stays untested.
    } else if (roll < 0.5) {
      const loadable = Math.round(declared * (0.25 + 0.75 * next()) / 256) * 256;
      record.status = "tested";
      record.loadableContext = loadable;
      record.workingContext = Math.round(loadable * (0.3 + 0.7 * next()) / 256) * 256;
      record.testedAt = testedAt;
      record.precision = Math.max(256, Math.floor(declared / 100));
    } else if (roll < 0.6) {
      record.status = "failed";
      record.testedAt = testedAt;
      record.error = pick([
        'LM Studio refused to load the model at 2048 tokens: "insufficient system resources"',
        'The model failed the sanity prompt "2+2=" at every size it loaded',
        "The model process crashed while loading at 4096 tokens",
      ]);
    } else if (roll < 0.65) {
      const loadOk = Math.round(declared * 0.5 / 256) * 256;
      record.status = "testing";
      record.search = {
        version: 1,
        phase: "working",
        loadOk,
        loadFail: null,
        fitHint: null,
        saneOk: loadOk,
        workOk: 2048,
        workFail: loadOk,
        loadable: loadOk,
        working: null,
      };
    } else if (roll < 0.7) {
      record.status = "missing";
      record.statusBeforeMissing = "untested";
      record.missingSince = testedAt;
    }
    records.push(record);
  }
  return records;
}

interface Timed {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
}

async function timeRun(args: string[], env: Record<string, string>): Promise<Timed> {
  const command = new Deno.Command("deno", {
    args,
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const started = performance.now();
  const output = await command.output();
  const ms = performance.now() - started;
  const decoder = new TextDecoder();
  return {
    ms,
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function main(): Promise<number> {
  const flags = await readPermissionFlags();
  const home = await Deno.makeTempDir({ prefix: "lmstrix-bench-" });
  try {
    const registry = emptyRegistry();
    for (const record of makeRecords(MODEL_COUNT)) registry.models[record.id] = record;
    const paths = lmstrixPaths(home);
    await saveRegistry(paths, registry);
    const registryBytes = (await Deno.stat(paths.registry)).size;

    const env = { LMSTRIX_LMSTUDIO_DIR: home, NO_COLOR: "1" };
    // The baseline, the measured command, and `--version` (the CLI's modules and nothing else)
    // to show how much of the time is loading code rather than reading the registry.
    const baseline = { label: "deno eval 0", args: ["eval", "0"] };
    const list = {
      label: "deno run <permissions.flags> main.ts list --json",
      args: ["run", ...flags, "main.ts", "list", "--json"],
    };
    const version = {
      label: "deno run <permissions.flags> main.ts --version",
      args: ["run", ...flags, "main.ts", "--version"],
    };
    const commands = [baseline, list, version];

    // Warm-up: fills Deno's npm and transpile caches; also checks that every command works.
    for (let run = 0; run < WARMUP_RUNS; run++) {
      for (const { label, args } of commands) {
        const result = await timeRun(args, env);
        if (result.code !== 0) {
          console.error(`error: "${label}" exited ${result.code}\n${result.stderr}`);
          return 1;
        }
      }
    }
    const listed = await timeRun(list.args, env);
    const models = (JSON.parse(listed.stdout) as { models: unknown[] }).models.length;
    if (models !== MODEL_COUNT) {
      console.error(`error: "list --json" showed ${models} models, expected ${MODEL_COUNT}`);
      return 1;
    }

    // Alternate the commands so that drift in machine load hits them alike.
    const times = new Map(commands.map((command) => [command, [] as number[]]));
    for (let run = 0; run < RUNS; run++) {
      for (const command of commands) {
        const result = await timeRun(command.args, env);
        if (result.code !== 0) {
          console.error(`error: "${command.label}" exited ${result.code}\n${result.stderr}`);
          return 1;
        }
        times.get(command)!.push(result.ms);
      }
    }

    const medianOf = (command: typeof baseline) => median(times.get(command)!);
    const ratio = medianOf(list) / medianOf(baseline);
    const within = ratio <= TARGET_RATIO;
    const header = ["command", "median", "min", "max", "x baseline"];
    const rows = commands.map((command) => {
      const ms = times.get(command)!;
      return [
        command.label,
        `${median(ms).toFixed(1)} ms`,
        `${Math.min(...ms).toFixed(1)} ms`,
        `${Math.max(...ms).toFixed(1)} ms`,
        `${(median(ms) / medianOf(baseline)).toFixed(2)}x`,
      ];
    });
    const widths = header.map((title, column) =>
      Math.max(title.length, ...rows.map((row) => row[column]!.length))
    );
    const line = (cells: string[]) =>
      cells.map((cell, column) =>
        column === 0 ? cell.padEnd(widths[0]!) : cell.padStart(widths[column]!)
      )
        .join("  ");

    console.log(
      `Start-up benchmark: deno ${Deno.version.deno} on ${Deno.build.target}, ` +
        `${MODEL_COUNT} models (models.json ${(registryBytes / 1024).toFixed(0)} KiB), ` +
        `${RUNS} timed runs each after ${WARMUP_RUNS} warm-up runs`,
    );
    console.log("");
    console.log(line(header));
    console.log(line(widths.map((width) => "-".repeat(width))));
    for (const row of rows) console.log(line(row));
    console.log("");
    console.log(
      `${within ? "PASS" : "FAIL"}: list --json takes ${ratio.toFixed(2)}x the median time ` +
        `of deno eval 0 (target: at most ${TARGET_RATIO}x)`,
    );
    return within ? 0 : 1;
  } finally {
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  Deno.exitCode = await main();
}

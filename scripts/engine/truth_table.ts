/**
 * The trained model's measured curve as markdown, from `tests/fixtures/engine_truth.json`: the
 * README's short table and docs/engine.md's full one (each found by its first line,
 * `| <model>: context |`), written by `deno task engine:sweep --write` (or by this file alone:
 * `deno run --allow-read --allow-write scripts/engine/truth_table.ts --write`) and compared by
 * the engine tests, never typed.
 *
 * @module
 */

/** What the tables need of the truth file. */
export interface CurveTruth {
  seeds: number;
  models: Record<string, {
    trainedContext: number | null;
    declaredContext: number;
    curve: Array<{ context: number; passed: number; probes: number }>;
  }>;
}

/** The trained models' pass rates by context size; `short`: the README's few columns. */
export function curveTable(truth: CurveTruth, short: boolean): string {
  const lines: string[] = [];
  for (const [id, model] of Object.entries(truth.models)) {
    if (model.trainedContext === null) continue;
    let rungs = model.curve.filter((p) => p.probes > 0);
    if (short) {
      const keep = new Set([1, 1.25, 1.5, 2, 3, 4, 8].map((f) => f * model.trainedContext!));
      rungs = rungs.filter((p) => keep.has(p.context));
    }
    const head = [`${id}: context`, ...rungs.map((p) => String(p.context))];
    const row = [
      "right answers",
      ...rungs.map((p) => `${Math.round(100 * p.passed / p.probes)} %`),
    ];
    // Laid out as deno fmt lays tables out, so that the files stay formatted.
    const widths = head.map((cell, i) => Math.max(3, cell.length, row[i]!.length));
    const line = (cells: string[]) =>
      `| ${
        cells.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join(" | ")
      } |`;
    lines.push(
      line(head),
      line(widths.map((w, i) => i === 0 ? "-".repeat(w) : `${"-".repeat(w - 1)}:`)),
      line(row),
    );
  }
  return lines.join("\n");
}

/** `text` with its table (same first cell, same number of lines) replaced by `table`. */
export function withCurve(text: string, table: string): string {
  const fresh = table.split("\n");
  const first = fresh[0]?.slice(0, fresh[0].indexOf(" | ") + 3) ?? "";
  const lines = text.split("\n");
  const at = lines.findIndex((line) => first !== "" && line.startsWith(first));
  if (at < 0) return text;
  lines.splice(at, fresh.length, ...fresh);
  return lines.join("\n");
}

/** The README and docs/engine.md with their curve blocks as the truth file says. */
export async function curveDocs(root: URL): Promise<Array<{ path: URL; text: string }>> {
  const truth: CurveTruth = JSON.parse(
    await Deno.readTextFile(new URL("tests/fixtures/engine_truth.json", root)),
  );
  const out = [];
  for (const [file, short] of [["README.md", true], ["docs/engine.md", false]] as const) {
    const path = new URL(file, root);
    out.push({ path, text: withCurve(await Deno.readTextFile(path), curveTable(truth, short)) });
  }
  return out;
}

if (import.meta.main && Deno.args.includes("--write")) {
  for (const { path, text } of await curveDocs(new URL("../../", import.meta.url))) {
    await Deno.writeTextFile(path, text);
  }
}

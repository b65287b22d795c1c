/**
 * The examples that close each command's `--help`.
 *
 * @module
 */

/**
 * Each command's examples, shown at the end of its `--help`: real commands, which
 * tests/suggested_commands_test.ts runs (`http://localhost:1234` standing for the test's server).
 */
export const EXAMPLES = {
  lmstrix: ["lmstrix scan", "lmstrix test --all", "lmstrix apply --all --dry-run"],
  scan: ["lmstrix scan", "lmstrix scan --server http://localhost:1234", "lmstrix scan --json"],
  list: ["lmstrix list", "lmstrix list --sort working --reverse", "lmstrix list --format csv"],
  test: [
    "lmstrix test qwen2.5-7b-instruct",
    "lmstrix test --all --max-context 32k",
    "lmstrix test mistral-nemo --force --precision 512",
  ],
  status: ["lmstrix status", "lmstrix status --json"],
  show: ["lmstrix show mistral-nemo", "lmstrix show qwen2.5-7b-instruct --json"],
  apply: [
    "lmstrix apply --all --dry-run",
    "lmstrix apply mistral-nemo --margin 5%",
    "lmstrix apply --undo --all",
  ],
} as const satisfies Record<string, readonly string[]>;

/** The help's closing lines: the examples, indented. */
export function examples(lines: readonly string[]): string {
  return ["", "Examples:", ...lines.map((line) => `  ${line}`)].join("\n");
}

/**
 * `list`, `status` and `show` must start fast: the module graph that `main.ts` loads before any
 * command runs must not hold the SDK (or the table library), which only dynamic imports reach.
 */

import assert from "node:assert/strict";

interface Dependency {
  specifier: string;
  code?: { specifier: string };
  isDynamic?: boolean;
}
interface ModuleInfo {
  specifier: string;
  dependencies?: Dependency[];
}

async function moduleGraph(): Promise<Map<string, ModuleInfo>> {
  const output = await new Deno.Command("deno", {
    args: ["info", "--json", new URL("../main.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as { modules: ModuleInfo[] };
  return new Map(info.modules.map((m) => [m.specifier, m]));
}

/** Modules reachable from `root` through imports of code, following dynamic ones or not. */
function reachable(graph: Map<string, ModuleInfo>, root: string, dynamic: boolean): Set<string> {
  const seen = new Set<string>([root]);
  const queue = [root];
  while (queue.length > 0) {
    const module = graph.get(queue.pop()!);
    for (const dependency of module?.dependencies ?? []) {
      const target = dependency.code?.specifier;
      if (target === undefined || (dependency.isDynamic && !dynamic) || seen.has(target)) continue;
      seen.add(target);
      queue.push(target);
    }
  }
  return seen;
}

Deno.test("main.ts reaches the SDK and the table library only through dynamic imports", async () => {
  const graph = await moduleGraph();
  const root = new URL("../main.ts", import.meta.url).href;
  const isSdk = (specifier: string) => specifier.includes("@lmstudio/sdk");
  const isTable = (specifier: string) => specifier.includes("cli-table3");
  const atStart = [...reachable(graph, root, false)];
  assert.deepEqual(atStart.filter(isSdk), [], "the SDK is loaded at start-up");
  assert.deepEqual(atStart.filter(isTable), [], "cli-table3 is loaded at start-up");
  // The check means something only if the SDK and the table library are there at all.
  const everything = [...reachable(graph, root, true)];
  assert.ok(everything.some(isSdk), "the SDK is not reachable from main.ts at all");
  assert.ok(everything.some(isTable), "cli-table3 is not reachable from main.ts at all");
});

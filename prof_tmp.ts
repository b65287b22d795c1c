const t0 = performance.now();
const { loadRegistry } = await import("./src/registry/registry.ts");
const { lmstrixPaths } = await import("./src/paths.ts");
const t1 = performance.now();
const reg = await loadRegistry(lmstrixPaths(Deno.args[0]!));
const t2 = performance.now();
const { toContractJson } = await import("./src/registry/model_record.ts");
const text = JSON.stringify({ models: Object.values(reg.models).map(toContractJson) }, null, 2);
const t3 = performance.now();
console.error(
  "import",
  (t1 - t0).toFixed(1),
  "load",
  (t2 - t1).toFixed(1),
  "stringify",
  (t3 - t2).toFixed(1),
  text.length,
);

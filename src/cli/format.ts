/** Small formatting helpers shared by the command views. */

/**
 * Tokens for tables: whole multiples of 1024 the way model cards write them ("128k"), anything
 * else exactly, with thousands separators ("45,000"), so that a measured limit is never rounded.
 */
export function formatTokens(tokens: number | null | undefined): string {
  if (tokens === null || tokens === undefined) return "-";
  if (tokens >= 1024 && tokens % 1024 === 0) return `${tokens / 1024}k`;
  return tokens.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Bytes in binary units with one decimal: "4.4 GiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A percentage with one decimal, or "-". */
export function formatPercent(percent: number | null): string {
  return percent === null ? "-" : `${percent.toFixed(1)}%`;
}

/** Seconds or minutes, for elapsed times. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/**
 * A bar of `width` cells showing working and loadable context against the declared one:
 * working cells, then the loadable part beyond working, then the rest of the declared context.
 */
export function contextBar(
  declared: number,
  loadable: number | null,
  working: number | null,
  width: number,
  unicode: boolean,
): string {
  if (declared <= 0 || (loadable === null && working === null)) return " ".repeat(width);
  const cells = (n: number | null) =>
    n === null ? 0 : Math.max(0, Math.min(width, Math.round((n / declared) * width)));
  const w = cells(working);
  const l = Math.max(w, cells(loadable));
  const [full, part, rest] = unicode ? ["█", "▒", "·"] : ["#", "+", "."];
  return full.repeat(w) + part.repeat(l - w) + rest.repeat(width - l);
}

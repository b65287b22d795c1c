/**
 * When the machine last started, as evidence about a run that died during a load: a load that
 * froze the machine ends in a restart, one that did not leaves the boot time unchanged.
 *
 * @module
 */

/**
 * The machine's boot time in milliseconds since the epoch (to the second), or undefined when it
 * cannot be read. Needs `--allow-sys=osUptime` (Deno lets no narrower permission read
 * `/proc/stat`).
 */
export function bootTimeMs(): number | undefined {
  try {
    return Date.now() - Deno.osUptime() * 1000;
  } catch {
    return undefined;
  }
}

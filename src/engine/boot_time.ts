/**
 * Which boot of the machine this is, as evidence about a run that died during a load: a load
 * that froze the machine ends in a restart, one that did not leaves the machine in the same boot.
 *
 * The boot is told by what does not move with the wall clock. `Date.now() - uptime` does: an NTP
 * step after boot, a VM resumed, or `date -s` shifts it by any amount, which looked like a restart
 * and stored a too-low limit. So, in order:
 * - Linux: `/proc/sys/kernel/random/boot_id`, a random id the kernel draws at each boot. Deno
 *   lets only `--allow-all` read under `/proc/sys`, so the CLI (narrow permissions) goes without;
 *   a library caller running with `-A` gets it.
 * - Everywhere: the uptime (a monotonic clock, `--allow-sys=osUptime`): less than at the mark
 *   means a new boot.
 * - macOS and others: the boot time (`kern.boottime`, which Deno's uptime is computed from),
 *   equal within {@linkcode BOOT_TIME_TOLERANCE_MS} means the same boot.
 * When none of these decides, whether the machine restarted is unknown, and the load is tried
 * again rather than counted as failed (a second death at that size does count).
 *
 * @module
 */

/** What identifies the machine's current boot; each part may be missing where it can't be read. */
export interface BootMark {
  /** Linux's boot id. */
  bootId?: string | undefined;
  /** Milliseconds since boot (monotonic). */
  uptimeMs?: number | undefined;
  /** The boot time by the wall clock (ms since the epoch), to the second. */
  bootTimeMs?: number | undefined;
}

/** Boot times this close are the same boot: the uptime is read to the second, and rounded. */
export const BOOT_TIME_TOLERANCE_MS = 2_000;

/** The Linux file that holds the boot id. */
const BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id";

/**
 * The current boot's mark, read from the system; undefined when nothing can be read. Needs
 * `--allow-sys=osUptime` and read access to {@linkcode BOOT_ID_FILE} on Linux.
 */
export function bootMark(): BootMark | undefined {
  const mark: BootMark = {};
  if (Deno.build.os === "linux") {
    try {
      const id = Deno.readTextFileSync(BOOT_ID_FILE).trim();
      if (id !== "") mark.bootId = id;
    } catch {
      // Not permitted (see above) or not mounted: the uptime decides.
    }
  }
  try {
    const uptimeMs = Deno.osUptime() * 1000;
    mark.uptimeMs = uptimeMs;
    mark.bootTimeMs = Date.now() - uptimeMs;
  } catch {
    // No permission or no call on this system.
  }
  return Object.keys(mark).length === 0 ? undefined : mark;
}

/**
 * Whether the machine restarted between the boot `before` (at the mark) and `now`: true, false,
 * or undefined when that cannot be told.
 */
export function restartedSince(
  before: BootMark | undefined,
  now: BootMark | undefined,
): boolean | undefined {
  if (before === undefined || now === undefined) return undefined;
  if (before.bootId !== undefined && now.bootId !== undefined) return before.bootId !== now.bootId;
  if (
    before.uptimeMs !== undefined && now.uptimeMs !== undefined &&
    now.uptimeMs + BOOT_TIME_TOLERANCE_MS < before.uptimeMs
  ) return true;
  if (
    before.bootTimeMs !== undefined && now.bootTimeMs !== undefined &&
    Math.abs(now.bootTimeMs - before.bootTimeMs) <= BOOT_TIME_TOLERANCE_MS
  ) return false;
  return undefined;
}

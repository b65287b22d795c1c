/**
 * A small seeded pseudo-random number generator (mulberry32), shared by everything that must be
 * random yet repeatable: the haystack's filler and needles, the fake probe's noise in tests, and the
 * soak and benchmark scripts. Pure: no Deno APIs, no clock, so any layer may import it.
 *
 * @module
 */

/**
 * Returns a generator of numbers in [0, 1) that gives the same sequence for the same `seed`
 * (taken as an unsigned 32-bit integer).
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Model ids: one order and one hash, the same on every platform and in every locale.
 *
 * @module
 */

/** Orders ids by UTF-16 code unit, never by locale (no ICU collation: fast and stable). */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * 32-bit FNV-1a over the UTF-8 bytes of `text`: small, synchronous and stable across runs and
 * platforms. Used for file names that must stay distinct and for per-model haystack seeds.
 */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

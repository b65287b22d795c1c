/**
 * Writing a whole buffer: `write` may write fewer bytes than asked (a pipe, a full disk), so every
 * writer loops until all of it is out.
 *
 * @module
 */

/** Something bytes can be written to, a part at a time. */
export interface Writable {
  write(bytes: Uint8Array): Promise<number>;
}

/** Something bytes can be written to synchronously, a part at a time. */
export interface WritableSync {
  writeSync(bytes: Uint8Array): number;
}

/** Writes every byte of `bytes` to `file`. */
export async function writeAll(file: Writable, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/** Writes every byte of `bytes` to `file`, synchronously (stdout and stderr). */
export function writeAllSync(file: WritableSync, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

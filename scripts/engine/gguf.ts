/**
 * Reads what the engine's model listing needs from a GGUF file's header: the architecture, the
 * name, the declared context (`<arch>.context_length`), the file type and the parameter count
 * (from the tensor shapes). Only the header is read, however large the file.
 *
 * @module
 */

/** What a GGUF header says about its model. */
export interface GgufSummary {
  architecture: string;
  name: string | null;
  declaredContext: number;
  /** `general.file_type` (0: all F32, 1: mostly F16, ...); null when absent. */
  fileType: number | null;
  parameters: number;
  /** `lmstrix.trained_context`: the length a model of this project was trained at. */
  trainedContext: number | null;
}

/** A cursor over a file, reading it in blocks as the header parser asks for bytes. */
class Cursor {
  #file: Deno.FsFile;
  #buffer = new Uint8Array(0);
  #start = 0;
  offset = 0;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  async bytes(n: number): Promise<Uint8Array> {
    const end = this.offset + n;
    while (this.#start + this.#buffer.length < end) {
      const block = new Uint8Array(Math.max(1 << 20, n));
      await this.#file.seek(this.#start + this.#buffer.length, Deno.SeekMode.Start);
      const read = await this.#file.read(block);
      if (read === null || read === 0) throw new Error("The GGUF header ends early");
      const kept = this.#buffer.subarray(this.offset - this.#start);
      const grown = new Uint8Array(kept.length + read);
      grown.set(kept);
      grown.set(block.subarray(0, read), kept.length);
      this.#start = this.offset;
      this.#buffer = grown;
    }
    const out = this.#buffer.subarray(this.offset - this.#start, end - this.#start);
    this.offset = end;
    return out;
  }

  async view(n: number): Promise<DataView> {
    const b = await this.bytes(n);
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  async u32(): Promise<number> {
    return (await this.view(4)).getUint32(0, true);
  }

  async u64(): Promise<number> {
    return Number((await this.view(8)).getBigUint64(0, true));
  }

  async string(): Promise<string> {
    return new TextDecoder().decode(await this.bytes(await this.u64()));
  }
}

const SCALAR_BYTES: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};

async function readValue(cursor: Cursor, type: number): Promise<unknown> {
  if (type === 8) return await cursor.string();
  if (type === 9) {
    const element = await cursor.u32();
    const count = await cursor.u64();
    if (element === 8) {
      for (let i = 0; i < count; i++) await cursor.bytes(await cursor.u64());
    } else {
      const size = SCALAR_BYTES[element];
      if (size === undefined) throw new Error(`Unknown GGUF array type ${element}`);
      await cursor.bytes(size * count);
    }
    return undefined; // Arrays (the vocabulary) are skipped.
  }
  const view = await cursor.view(SCALAR_BYTES[type] ?? 0);
  switch (type) {
    case 0:
      return view.getUint8(0);
    case 1:
      return view.getInt8(0);
    case 2:
      return view.getUint16(0, true);
    case 3:
      return view.getInt16(0, true);
    case 4:
      return view.getUint32(0, true);
    case 5:
      return view.getInt32(0, true);
    case 6:
      return view.getFloat32(0, true);
    case 7:
      return view.getUint8(0) !== 0;
    case 10:
      return Number(view.getBigUint64(0, true));
    case 11:
      return Number(view.getBigInt64(0, true));
    case 12:
      return view.getFloat64(0, true);
  }
  throw new Error(`Unknown GGUF value type ${type}`);
}

/** Reads the summary of the GGUF file at `path`; throws when it is not one. */
export async function readGgufSummary(path: string): Promise<GgufSummary> {
  using file = await Deno.open(path);
  const cursor = new Cursor(file);
  const magic = new TextDecoder().decode(await cursor.bytes(4));
  if (magic !== "GGUF") throw new Error(`"${path}" is not a GGUF file`);
  const version = await cursor.u32();
  if (version < 2) throw new Error(`"${path}" is GGUF version ${version}; 2 or 3 expected`);
  const tensors = await cursor.u64();
  const kvs = await cursor.u64();
  const meta = new Map<string, unknown>();
  for (let i = 0; i < kvs; i++) {
    const key = await cursor.string();
    meta.set(key, await readValue(cursor, await cursor.u32()));
  }
  let parameters = 0;
  for (let i = 0; i < tensors; i++) {
    await cursor.string();
    const dims = await cursor.u32();
    let count = 1;
    for (let d = 0; d < dims; d++) count *= await cursor.u64();
    await cursor.bytes(12); // type, offset
    parameters += count;
  }
  const architecture = String(meta.get("general.architecture") ?? "unknown");
  const declared = meta.get(`${architecture}.context_length`);
  if (typeof declared !== "number") {
    throw new Error(`"${path}" declares no context length (${architecture}.context_length)`);
  }
  const name = meta.get("general.name");
  const fileType = meta.get("general.file_type");
  const trained = meta.get("lmstrix.trained_context");
  return {
    architecture,
    name: typeof name === "string" ? name : null,
    declaredContext: declared,
    fileType: typeof fileType === "number" ? fileType : null,
    parameters,
    trainedContext: typeof trained === "number" ? trained : null,
  };
}

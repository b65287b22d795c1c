/**
 * Builds needle-in-a-haystack prompts to an exact token count (the RULER method).
 *
 * For one seed the filler is a single deterministic text, `master`, with needles of the contract's
 * form placed through it at growing intervals, each with its own key and value. A probe of n tokens
 * is a prefix of `master`, then the question about one needle inside that prefix. Prompts of
 * different lengths from one seed therefore share their beginning, which lets the server reuse its
 * prompt cache between probes on one loaded instance: a longer probe after a shorter one pays only
 * for the new tokens. The other needles act as distractors, as in RULER's multi-key variant.
 */

import { seededRandom } from "../random.ts";

/** Counts tokens with the model's own tokenizer. */
export type TokenCounter = (text: string) => Promise<number>;

/** One needle placed in the master text. */
export interface Needle {
  key: string;
  value: string;
  /** Character offsets of the needle sentence in the master text. */
  start: number;
  end: number;
}

/** A built prompt. */
export interface NeedlePrompt {
  prompt: string;
  key: string;
  value: string;
  /** Tokens in `prompt`, counted by the model's tokenizer. */
  promptTokens: number;
  /** Where the asked needle sits, from 0 (start) to 1 (end). */
  depth: number;
}

/** The contract's sanity prompt and its grading. */
export const SANITY_PROMPT = "2+2=";

/** True when the completion of {@link SANITY_PROMPT} contains a 4. */
export function gradeSanity(completion: string): boolean {
  return completion.includes("4");
}

/** True when the completion of a needle prompt contains the needle's value. */
export function gradeNeedle(completion: string, value: string): boolean {
  return completion.includes(value);
}

/** The contract's needle sentence. */
export function needleSentence(key: string, value: string): string {
  return `One of the special magic numbers for ${key} is: ${value}.`;
}

/** The contract's question and answer prefix that end every needle prompt. */
export function questionFor(key: string): string {
  return `\n\nWhat is the special magic number for ${key} mentioned in the provided text? ` +
    `The special magic number for ${key} mentioned in the provided text is`;
}

const HEADER = "A long text follows. Special magic numbers are hidden in it. " +
  "Read it closely: afterwards you will be asked for one of them.\n\n";

const SUBJECTS = [
  "the river",
  "an old lighthouse",
  "the village baker",
  "a quiet orchard",
  "the northern road",
  "a wandering merchant",
  "the harbour master",
  "an empty library",
  "the mountain pass",
  "a patient gardener",
  "the evening train",
  "a copper kettle",
  "the weaver",
  "a distant bell",
];
const VERBS = [
  "watched",
  "carried",
  "remembered",
  "followed",
  "crossed",
  "described",
  "mended",
  "waited for",
  "passed",
  "welcomed",
  "ignored",
  "painted",
  "counted",
  "guarded",
];
const OBJECTS = [
  "the morning fog",
  "a basket of apples",
  "the long winter",
  "every lantern on the pier",
  "the slow tide",
  "a letter from the coast",
  "the broken fence",
  "the last ferry",
  "a field of barley",
  "the quiet square",
  "the shifting dunes",
  "a map of the valley",
];
const TAILS = [
  "before the rain began",
  "as the market opened",
  "while the wind turned west",
  "without a word",
  "long after dusk",
  "in the pale light",
  "as it had for years",
  "under a grey sky",
  "beside the stone wall",
  "until the bells rang",
];
const KEY_WORDS = [
  "amber",
  "brisk",
  "cedar",
  "dusky",
  "ember",
  "fable",
  "gusty",
  "hazel",
  "ivory",
  "jolly",
  "kelp",
  "lunar",
  "mossy",
  "noble",
  "ochre",
  "pearl",
  "quill",
  "rustic",
  "sable",
  "tawny",
  "umber",
  "velvet",
  "willow",
  "xenon",
  "yonder",
  "zephyr",
  "falcon",
  "otter",
  "heron",
  "maple",
  "cobalt",
  "thistle",
  "harbor",
  "meadow",
  "granite",
  "lantern",
  "orchid",
  "saffron",
];

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

/** A candidate prompt and its size in tokens; Infinity when no needle fits before its cut. */
interface Measured {
  built: { prompt: string; needle: Needle } | undefined;
  tokens: number;
}

/** Characters per chunk of the master text whose token count is kept (cut back to a word). */
const CHUNK_CHARS = 8_000;

/**
 * The deterministic master text of one seed, grown on demand, and the prompts cut from it.
 *
 * Counting tokens costs the server time in proportion to the text counted, so the builder counts
 * each chunk of the master text once and adds the counts: a prompt's count is the sum of the whole
 * chunks before its cut, the count of the part of the last chunk and the count of the question.
 * Chunks and cuts always end just before a space or a line break, where tokenizers that split
 * words at spaces (the emulator's, BPE with a word pre-tokenizer, SentencePiece) start a new
 * token, so the counts add up. The first prompt of each haystack is also counted whole; if its
 * count differs from the sum (a tokenizer that merges across words, or adds a BOS token per
 * call), the haystack falls back to counting every candidate prompt whole.
 */
export class Haystack {
  readonly seed: number;
  #text = HEADER;
  #needles: Needle[] = [];
  #nextNeedleAt = 1_500;
  #keys = new Set<string>();
  #random: () => number;
  /** Ends of the counted chunks (character offsets, each before a space or a line break). */
  #chunkEnds: number[] = [];
  /** Tokens of the master text up to each chunk end. */
  #chunkTokens: number[] = [];
  /** Tokens of each question, by needle key. */
  #questionTokens = new Map<string, number>();
  /** Whether the sum of counts was checked against a whole count; null: not yet. */
  #additive: boolean | null = null;

  /** Creates the haystack of `seed`. */
  constructor(seed: number) {
    this.seed = seed;
    this.#random = seededRandom(seed);
  }

  /** The needles placed so far. */
  get needles(): readonly Needle[] {
    return this.#needles;
  }

  /** Grows the master text to at least `chars` characters. */
  #grow(chars: number): void {
    const parts: string[] = [];
    let length = this.#text.length;
    while (length < chars) {
      let sentence: string;
      if (length >= this.#nextNeedleAt) {
        const key = this.#newKey();
        const value = String(1_000_000 + Math.floor(this.#random() * 9_000_000));
        sentence = needleSentence(key, value) + " ";
        this.#needles.push({ key, value, start: length, end: length + sentence.length - 1 });
        // Dense near the start so short prompts hold a few needles, then every 15 % further.
        this.#nextNeedleAt = length + Math.max(1_500, Math.floor(length * 0.15));
      } else {
        const subject = pick(this.#random, SUBJECTS);
        sentence = `${subject[0]?.toUpperCase()}${subject.slice(1)} ${pick(this.#random, VERBS)} ` +
          `${pick(this.#random, OBJECTS)} ${pick(this.#random, TAILS)}. `;
        if (this.#random() < 0.08) sentence += "\n\n";
      }
      parts.push(sentence);
      length += sentence.length;
    }
    this.#text += parts.join("");
  }

  #newKey(): string {
    for (;;) {
      const key = [
        pick(this.#random, KEY_WORDS),
        pick(this.#random, KEY_WORDS),
        pick(this.#random, KEY_WORDS),
      ]
        .join("-");
      if (!this.#keys.has(key)) {
        this.#keys.add(key);
        return key;
      }
    }
  }

  /** The needle whose middle lies nearest `depth` of a prefix `cut` characters long. */
  #needleFor(cut: number, depth: number): Needle | undefined {
    let best: Needle | undefined;
    let bestDistance = Infinity;
    for (const needle of this.#needles) {
      if (needle.end > cut) break;
      const distance = Math.abs((needle.start + needle.end) / 2 / cut - depth);
      if (distance < bestDistance) {
        best = needle;
        bestDistance = distance;
      }
    }
    return best;
  }

  /** The cut nearest `chars`, moved back to the end of a word. */
  #cutAt(chars: number): number {
    this.#grow(chars + 2_000);
    let cut = Math.max(HEADER.length, Math.floor(chars));
    while (cut > HEADER.length && !this.#isBreak(cut)) cut--;
    return cut;
  }

  #isBreak(at: number): boolean {
    return this.#text[at] === " " || this.#text[at] === "\n";
  }

  /** The cut after the next word following `cut`. */
  #nextCut(cut: number): number {
    let next = cut + 1;
    this.#grow(next + 2_000);
    while (next < this.#text.length && !this.#isBreak(next)) next++;
    return next;
  }

  #promptAt(cut: number, depth: number): { prompt: string; needle: Needle } | undefined {
    const needle = this.#needleFor(cut, depth);
    if (!needle) return undefined;
    return { prompt: this.#text.slice(0, cut) + questionFor(needle.key), needle };
  }

  /** Counts the chunks up to `cut`; returns the index of the last chunk ending at or before it. */
  async #countChunks(cut: number, count: TokenCounter): Promise<number> {
    for (;;) {
      const start = this.#chunkEnds.at(-1) ?? 0;
      if (start + CHUNK_CHARS > cut) break;
      const end = this.#cutAt(start + CHUNK_CHARS);
      const tokens = await count(this.#text.slice(start, end));
      this.#chunkEnds.push(end);
      this.#chunkTokens.push((this.#chunkTokens.at(-1) ?? 0) + tokens);
    }
    let index = this.#chunkEnds.length - 1;
    while (index >= 0 && (this.#chunkEnds[index] ?? 0) > cut) index--;
    return index;
  }

  /** Tokens of the master text before `cut`, by the chunk counts plus the rest counted. */
  async #prefixTokens(cut: number, count: TokenCounter): Promise<number> {
    const index = await this.#countChunks(cut, count);
    const start = index < 0 ? 0 : this.#chunkEnds[index] ?? 0;
    const before = index < 0 ? 0 : this.#chunkTokens[index] ?? 0;
    return before + (cut > start ? await count(this.#text.slice(start, cut)) : 0);
  }

  async #question(key: string, count: TokenCounter): Promise<number> {
    const known = this.#questionTokens.get(key);
    if (known !== undefined) return known;
    const tokens = await count(questionFor(key));
    this.#questionTokens.set(key, tokens);
    return tokens;
  }

  /**
   * Builds a prompt of exactly `targetTokens` tokens where the tokenizer allows it (otherwise
   * the largest below it, a few tokens short at most), asking for the needle nearest `depth`.
   */
  async build(targetTokens: number, depth: number, count: TokenCounter): Promise<NeedlePrompt> {
    if (this.#additive === false) return await this.#buildCountingWhole(targetTokens, depth, count);
    const built = await this.#buildAdding(targetTokens, depth, count);
    if (this.#additive === null) {
      this.#additive = await count(built.prompt) === built.promptTokens;
      if (!this.#additive) return await this.#buildCountingWhole(targetTokens, depth, count);
    }
    return built;
  }

  /** {@link build} by adding chunk counts: the text is counted once per haystack, in chunks. */
  #buildAdding(targetTokens: number, depth: number, count: TokenCounter): Promise<NeedlePrompt> {
    const measured = async (cut: number, prefixTokens: () => Promise<number>) => {
      const built = this.#promptAt(cut, depth);
      if (!built) return { built, prefix: 0, tokens: Infinity };
      const prefix = await prefixTokens();
      return { built, prefix, tokens: prefix + await this.#question(built.needle.key, count) };
    };
    return this.#fit(
      targetTokens,
      count,
      (cut) => measured(cut, () => this.#prefixTokens(cut, count)),
      // A word's tokens add to the prefix, so only the word is counted.
      (from, cut, next) =>
        measured(next, async () => from.prefix + await count(this.#text.slice(cut, next))),
    );
  }

  /** {@link build} by counting every candidate prompt whole: for any tokenizer. */
  #buildCountingWhole(
    targetTokens: number,
    depth: number,
    count: TokenCounter,
  ): Promise<NeedlePrompt> {
    const measure = async (cut: number): Promise<Measured> => {
      const built = this.#promptAt(cut, depth);
      return { built, tokens: built ? await count(built.prompt) : Infinity };
    };
    return this.#fit(targetTokens, count, measure, (_from, _cut, next) => measure(next));
  }

  /**
   * The prompt at the largest cut that fits `targetTokens`: secant steps towards the target, back
   * word by word while too long, then forward word by word while the next word still fits.
   * `measure` sizes the prompt at a cut; `extend` sizes it at `next`, one word on from a measured
   * `cut`.
   */
  async #fit<M extends Measured>(
    targetTokens: number,
    count: TokenCounter,
    measure: (cut: number) => Promise<M>,
    extend: (from: M, cut: number, next: number) => Promise<M>,
  ): Promise<NeedlePrompt> {
    await this.#countChunks(CHUNK_CHARS, count);
    const ratio = (this.#chunkEnds[0] ?? 1) / Math.max(1, this.#chunkTokens[0] ?? 1);
    let cut = this.#cutAt(targetTokens * ratio);
    let at = await measure(cut);
    for (let i = 0; i < 8 && at.built && Math.abs(at.tokens - targetTokens) > 3; i++) {
      const next = this.#cutAt(cut + (targetTokens - at.tokens) * ratio);
      if (next === cut) break;
      cut = next;
      at = await measure(cut);
    }
    for (let guard = 0; guard < 200 && at.tokens > targetTokens && cut > HEADER.length; guard++) {
      cut = this.#cutAt(cut - 1);
      at = await measure(cut);
    }
    for (let guard = 0; guard < 200 && at.built && at.tokens < targetTokens; guard++) {
      const next = this.#nextCut(cut);
      const candidate = await extend(at, cut, next);
      if (!candidate.built || candidate.tokens > targetTokens) break;
      cut = next;
      at = candidate;
    }
    return this.#result(at.built, at.tokens, targetTokens, cut);
  }

  #result(
    built: Measured["built"],
    tokens: number,
    targetTokens: number,
    cut: number,
  ): NeedlePrompt {
    if (!built || tokens > targetTokens) {
      throw new RangeError(`A needle prompt needs more than ${targetTokens} tokens`);
    }
    return {
      prompt: built.prompt,
      key: built.needle.key,
      value: built.needle.value,
      promptTokens: tokens,
      depth: (built.needle.start + built.needle.end) / 2 / cut,
    };
  }
}

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

/** A small, fast, seedable PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

/**
 * The deterministic master text of one seed, grown on demand, and the prompts cut from it.
 */
export class Haystack {
  readonly seed: number;
  #text = HEADER;
  #needles: Needle[] = [];
  #nextNeedleAt = 1_500;
  #keys = new Set<string>();
  #random: () => number;
  /** Characters per token, learned from the model's tokenizer on first use. */
  #charsPerToken: number | undefined;

  /** Creates the haystack of `seed`. */
  constructor(seed: number) {
    this.seed = seed;
    this.#random = prng(seed);
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
    while (cut > HEADER.length && this.#text[cut] !== " " && this.#text[cut] !== "\n") cut--;
    return cut;
  }

  #promptAt(cut: number, depth: number): { prompt: string; needle: Needle } | undefined {
    const needle = this.#needleFor(cut, depth);
    if (!needle) return undefined;
    return { prompt: this.#text.slice(0, cut) + questionFor(needle.key), needle };
  }

  /**
   * Builds a prompt of exactly `targetTokens` tokens where the tokenizer allows it (otherwise
   * the largest below it, a few tokens short at most), asking for the needle nearest `depth`.
   */
  async build(targetTokens: number, depth: number, count: TokenCounter): Promise<NeedlePrompt> {
    if (this.#charsPerToken === undefined) {
      this.#grow(20_000);
      const sample = this.#text.slice(0, 20_000);
      this.#charsPerToken = sample.length / Math.max(1, await count(sample));
    }
    const ratio = this.#charsPerToken;
    // Secant steps towards the target, then word by word to the largest fit.
    let cut = this.#cutAt(targetTokens * ratio);
    let built = this.#promptAt(cut, depth);
    let tokens = built ? await count(built.prompt) : Infinity;
    for (
      let i = 0;
      i < 8 && built && tokens !== targetTokens && Math.abs(tokens - targetTokens) > 3;
      i++
    ) {
      const next = this.#cutAt(cut + (targetTokens - tokens) * ratio);
      if (next === cut) break;
      cut = next;
      built = this.#promptAt(cut, depth);
      tokens = built ? await count(built.prompt) : Infinity;
    }
    // Step back while too long, forward while the next word still fits.
    for (let guard = 0; guard < 200 && tokens > targetTokens && cut > HEADER.length; guard++) {
      cut = this.#cutAt(cut - 1);
      built = this.#promptAt(cut, depth);
      tokens = built ? await count(built.prompt) : Infinity;
    }
    for (let guard = 0; guard < 200 && built && tokens < targetTokens; guard++) {
      let next = cut + 1;
      while (next < this.#text.length && this.#text[next] !== " " && this.#text[next] !== "\n") {
        next++;
      }
      const candidate = this.#promptAt(next, depth);
      if (!candidate) break;
      const candidateTokens = await count(candidate.prompt);
      if (candidateTokens > targetTokens) break;
      cut = next;
      built = candidate;
      tokens = candidateTokens;
    }
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

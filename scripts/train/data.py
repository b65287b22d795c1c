"""Training and evaluation samples: the contract's needle probe, as src/probe/haystack.ts builds
it, with the answer `▁<value>.</s>` after the answer prefix; denser variants with needles placed
earlier and closer (distractors, so that the key must be matched); and the sanity prompt `2+2=4`."""

import random

import haystack
import tokenizer as tok

DEPTHS = [0.5, 0.25, 0.75, 0.1, 0.9, 0.4, 0.6]
TOKENIZER = tok.Tokenizer()


def probe(seed, target_tokens, depth, first_needle=1500, min_gap=1500):
    """(ids, answer_start) of a prompt of at most `target_tokens` tokens (BOS included) and its
    answer, or None when no needle fits."""
    h = haystack.Haystack(seed, first_needle, min_gap)
    encode = TOKENIZER.encode
    built = h.build(target_tokens - 1, depth, lambda cut: len(encode(h.text[:cut])),
                    lambda text: len(encode(text)))
    if built is None:
        return None
    prompt, _key, value = built
    ids = encode(prompt, bos=True)
    return ids + encode(" " + value + ".") + [tok.EOS], len(ids), value


def sanity():
    ids = TOKENIZER.encode("2+2=", bos=True)
    return ids + TOKENIZER.encode("4") + [tok.EOS], len(ids), "4"


def drill(rng, target):
    """An induction drill: needle sentences with keys and values, then the same sentences again.

    Every token of the repeat is predictable only by finding its earlier copy: the mechanism
    the probe's answer needs (find the key, copy the digits after it), with dozens of targets a
    sequence instead of the probe's seven. The whole repeat is the "answer"."""
    h = haystack.Haystack(rng.randrange(2**32))
    sentences = []
    while True:
        key = h.new_key()
        value = str(1_000_000 + int(h.random() * 9_000_000))
        sentences.append(haystack.needle_sentence(key, value) + " ")
        if len(TOKENIZER.encode("".join(sentences))) * 2 + 2 > target or len(sentences) > 8:
            sentences.pop()
            break
    if not sentences:
        return sanity()
    first = TOKENIZER.encode("".join(sentences), bos=True)
    again = TOKENIZER.encode("\n\n" + "".join(rng.sample(sentences, len(sentences))))
    return first + again + [tok.EOS], len(first) + 3, None


def training_sample(rng, target, drills=0.25):
    """One sample of about `target` prompt tokens (at most).

    Mostly one needle (as the probe's prompts up to about 600 tokens hold), placed anywhere;
    some prompts exactly as the probe builds them; some with needles every 150-1,500
    characters, whose questions can only be answered by matching the key.
    """
    r = rng.random()
    if r < 0.02:
        return sanity()
    if r > 1 - drills:
        return drill(rng, target)
    seed = rng.randrange(1_000_000, 2**32)
    depth = rng.choice(DEPTHS) if rng.random() < 0.5 else rng.random()
    if r < 0.3 and target >= 360:
        sample = probe(seed, target, depth)
        if sample is not None:
            return sample
    first = rng.randint(0, max(0, min(1500, target * 4 - 400)))
    gap = rng.randint(150, 1500) if r > 0.67 else 100_000
    return probe(seed, target, depth, first, gap) or sanity()

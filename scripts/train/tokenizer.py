"""The models' vocabulary and tokenizer: llama.cpp's SentencePiece ("llama") algorithm.

The vocabulary holds the control tokens, the 256 byte-fallback tokens, `▁` (the space) and every
printable ASCII character, so any text round-trips. It adds whole words: each word of the probe's
text (header, filler, keys, needle sentence, question), once after a space (`▁river`) and once
without (`River` at a sentence start, `brisk` after a hyphen), with all their prefixes, because
SentencePiece builds a token by merging adjacent pieces whose concatenation is in the vocabulary,
most scored first. With every prefix present the merging always ends in the whole word, so the
probe's text costs one token a word (about 4.7 characters a token) and digits stay one token each.
Shorter sequences make training and the engine tests several times cheaper than characters would.

No token holds `▁` except at its start, so no merge crosses a space: a text is tokenized word by
word, and the token counts of texts cut before a space add up (the probe's haystack relies on it).
"""

import re

import haystack

UNK, BOS, EOS = 0, 1, 2
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_BYTE = 1, 2, 3, 6
SPACE = "\u2581"


def probe_words():
    texts = [haystack.HEADER, haystack.needle_sentence("a-b-c", "1"),
             haystack.question_for("a-b-c")]
    texts += haystack.SUBJECTS + haystack.VERBS + haystack.OBJECTS + haystack.TAILS
    texts += haystack.KEY_WORDS
    words = set()
    for text in texts:
        for word in re.findall(r"[A-Za-z]+", text):
            words.add(word)
            words.add(word[0].upper() + word[1:])
            words.add(word.lower())
    return sorted(words)


def build_vocab():
    """(pieces, scores, types): the vocabulary in id order."""
    pieces = ["<unk>", "<s>", "</s>"]
    types = [TYPE_UNKNOWN, TYPE_CONTROL, TYPE_CONTROL]
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    types += [TYPE_BYTE] * 256
    singles = [SPACE] + [chr(c) for c in range(33, 127)]
    pieces += singles
    types += [TYPE_NORMAL] * len(singles)
    known = set(pieces)
    merged = []
    for word in probe_words():
        for form in (word, SPACE + word):
            for end in range(2, len(form) + 1):
                piece = form[:end]
                if piece not in known:
                    known.add(piece)
                    merged.append(piece)
    pieces += merged
    types += [TYPE_NORMAL] * len(merged)
    # Longer pieces merge first; the score only orders merges, the result is the whole word.
    scores = [0.0] * (3 + 256) + [-1000.0] * len(singles) + [float(len(p)) for p in merged]
    return pieces, scores, types


class Tokenizer:
    def __init__(self):
        self.pieces, self.scores, self.types = build_vocab()
        self.ids = {p: i for i, p in enumerate(self.pieces)}
        self.cache = {}

    def __len__(self):
        return len(self.pieces)

    def _word(self, word):
        """SentencePiece's merge loop on one space-delimited chunk (as llama.cpp runs it)."""
        symbols = list(word)
        while len(symbols) > 1:
            best, best_score = -1, None
            for i in range(len(symbols) - 1):
                joined = symbols[i] + symbols[i + 1]
                index = self.ids.get(joined)
                if index is not None and (best_score is None or self.scores[index] > best_score):
                    best, best_score = i, self.scores[index]
            if best < 0:
                break
            symbols[best:best + 2] = [symbols[best] + symbols[best + 1]]
        out = []
        for symbol in symbols:
            index = self.ids.get(symbol)
            if index is not None:
                out.append(index)
            else:
                out += [self.ids[f"<0x{b:02X}>"] for b in symbol.encode("utf-8")]
        return out

    def encode(self, text, bos=False):
        text = text.replace(" ", SPACE)
        out = [BOS] if bos else []
        for chunk in re.split(f"(?={SPACE})", text):
            if not chunk:
                continue
            cached = self.cache.get(chunk)
            if cached is None:
                cached = self._word(chunk)
                self.cache[chunk] = cached
            out += cached
        return out

    def decode(self, ids):
        data = bytearray()
        for i in ids:
            piece = self.pieces[i]
            if self.types[i] == TYPE_BYTE:
                data.append(int(piece[3:5], 16))
            elif self.types[i] == TYPE_NORMAL:
                data += piece.replace(SPACE, " ").encode("utf-8")
        return data.decode("utf-8", errors="replace")

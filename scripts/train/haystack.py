"""A faithful port of src/probe/haystack.ts (the master text and its needles) and src/random.ts.

Training and evaluation build prompts exactly as the probe does: the same header, filler sentences,
needle sentences, keys, values and question for a seed. Only the fitting to a token count differs
(here: the largest cut at a word break whose prompt fits, counted with the model's tokenizer), which
is what the probe's fitting converges to.
"""

MASK = 0xFFFFFFFF


def seeded_random(seed):
    """mulberry32, bit for bit as src/random.ts computes it."""
    state = seed & MASK

    def next_value():
        nonlocal state
        state = (state + 0x6D2B79F5) & MASK
        t = state
        t = ((t ^ (t >> 15)) * (t | 1)) & MASK
        t = (t ^ ((t + (((t ^ (t >> 7)) * (t | 61)) & MASK)) & MASK)) & MASK
        return ((t ^ (t >> 14)) & MASK) / 4294967296

    return next_value


def needle_sentence(key, value):
    return f"One of the special magic numbers for {key} is: {value}."


def question_for(key):
    return (f"\n\nWhat is the special magic number for {key} mentioned in the provided text? "
            f"The special magic number for {key} mentioned in the provided text is")


HEADER = ("A long text follows. Special magic numbers are hidden in it. "
          "Read it closely: afterwards you will be asked for one of them.\n\n")

SUBJECTS = ["the river", "an old lighthouse", "the village baker", "a quiet orchard",
            "the northern road", "a wandering merchant", "the harbour master", "an empty library",
            "the mountain pass", "a patient gardener", "the evening train", "a copper kettle",
            "the weaver", "a distant bell"]
VERBS = ["watched", "carried", "remembered", "followed", "crossed", "described", "mended",
         "waited for", "passed", "welcomed", "ignored", "painted", "counted", "guarded"]
OBJECTS = ["the morning fog", "a basket of apples", "the long winter", "every lantern on the pier",
           "the slow tide", "a letter from the coast", "the broken fence", "the last ferry",
           "a field of barley", "the quiet square", "the shifting dunes", "a map of the valley"]
TAILS = ["before the rain began", "as the market opened", "while the wind turned west",
         "without a word", "long after dusk", "in the pale light", "as it had for years",
         "under a grey sky", "beside the stone wall", "until the bells rang"]
KEY_WORDS = ["amber", "brisk", "cedar", "dusky", "ember", "fable", "gusty", "hazel", "ivory",
             "jolly", "kelp", "lunar", "mossy", "noble", "ochre", "pearl", "quill", "rustic",
             "sable", "tawny", "umber", "velvet", "willow", "xenon", "yonder", "zephyr", "falcon",
             "otter", "heron", "maple", "cobalt", "thistle", "harbor", "meadow", "granite",
             "lantern", "orchid", "saffron"]


def pick(random, items):
    return items[int(random() * len(items))]


class Haystack:
    """The master text of one seed, grown on demand (haystack.ts's #grow and #newKey).

    `first_needle` and `min_gap` default to the probe's (1,500 characters); training also uses
    other values to place needles earlier and more densely.
    """

    def __init__(self, seed, first_needle=1500, min_gap=1500):
        self.random = seeded_random(seed)
        self.text = HEADER
        self.needles = []  # (key, value, start, end)
        self.next_needle_at = first_needle
        self.min_gap = min_gap
        self.keys = set()

    def grow(self, chars):
        parts = []
        length = len(self.text)
        while length < chars:
            if length >= self.next_needle_at:
                key = self.new_key()
                value = str(1_000_000 + int(self.random() * 9_000_000))
                sentence = needle_sentence(key, value) + " "
                self.needles.append((key, value, length, length + len(sentence) - 1))
                self.next_needle_at = length + max(self.min_gap, int(length * 0.15))
            else:
                subject = pick(self.random, SUBJECTS)
                sentence = (subject[0].upper() + subject[1:] + " " + pick(self.random, VERBS) +
                            " " + pick(self.random, OBJECTS) + " " + pick(self.random, TAILS) +
                            ". ")
                if self.random() < 0.08:
                    sentence += "\n\n"
            parts.append(sentence)
            length += len(sentence)
        self.text += "".join(parts)

    def new_key(self):
        while True:
            key = "-".join([pick(self.random, KEY_WORDS) for _ in range(3)])
            if key not in self.keys:
                self.keys.add(key)
                return key

    def needle_for(self, cut, depth):
        best, best_distance = None, float("inf")
        for needle in self.needles:
            if needle[3] > cut:
                break
            distance = abs((needle[2] + needle[3]) / 2 / cut - depth)
            if distance < best_distance:
                best, best_distance = needle, distance
        return best

    def is_break(self, at):
        return self.text[at] in (" ", "\n")

    def build(self, target_tokens, depth, count_prefix, count_text):
        """The prompt of at most `target_tokens` tokens at the largest word-break cut.

        `count_prefix(text)` counts a prefix of the master text, `count_text(text)` any text.
        Returns (prompt, key, value) or None when no needle fits.
        """
        self.grow(target_tokens * 8 + 4000)
        breaks = [i for i in range(len(HEADER), len(self.text)) if self.is_break(i)]
        lo, hi, best = 0, len(breaks) - 1, None
        while lo <= hi:  # tokens grow with the cut: bisect over word breaks
            mid = (lo + hi) // 2
            cut = breaks[mid]
            needle = self.needle_for(cut, depth)
            tokens = float("inf") if needle is None else (
                count_prefix(cut) + count_text(question_for(needle[0])))
            if needle is not None and tokens <= target_tokens:
                best = (cut, needle)
                lo = mid + 1
            elif needle is None:
                lo = mid + 1
            else:
                hi = mid - 1
        if best is None:
            return None
        cut, needle = best
        return self.text[:cut] + question_for(needle[0]), needle[0], needle[1]

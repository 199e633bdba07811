"""The text of the embedded corpus: the project's word list and sentence patterns.

Sentences are drawn from `PATTERNS`, whose `{slot}`s are filled from `data_prep/words/words.txt`
(nouns, verbs, adjectives, adverbs, names, places, days, months) and from number makers (years,
prices, times, percentages, ...). The sentences of a form run on as one paragraph that is
wrapped into lines of `MIN_CHARS`..`MAX_CHARS` characters, as a writer fills a page. Across a
corpus of a few thousand lines every printable ASCII character occurs.
"""

import dataclasses
import os
import re

WORDS_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "words", "words.txt"
)

MIN_CHARS = 20  # shortest line
MAX_CHARS = 70  # longest line
WRAP_WIDTHS = (24, 64)  # a line is filled up to a width drawn uniformly from this range

SECTIONS = ("noun", "verb", "adjective", "adverb", "name", "place", "day", "month")

# (weight, pattern). `{slot}` is filled by `_fill`; `{{` and `}}` are literal braces. The
# patterns with rarer symbols carry smaller weights, large enough that a corpus of a few
# thousand lines holds each symbol dozens of times.
PATTERNS = (
    (6, "the {adj} {noun} {verbed} {det} {noun} near the {noun}."),
    (6, "{name} {verbed} {det} {adj} {noun} in {place} on {day}."),
    (5, "{det} {noun} {verbs} {dets} {nouns} {adv}."),
    (5, "we {verbed} {small} {adj} {nouns} before the {noun} {verbed} it."),
    (5, "{name} and {name} {verbed} the {nouns} by the {noun}."),
    (4, "why did {name} {verb} the {adj} {noun}?"),
    (4, "please {verb} the {noun}, then {verb} {det} {noun}."),
    (4, "{adv}, the {nouns} {verbed} over the {adj} {noun}."),
    (4, "it was {adj} and {adj}; {name} {verbed} {det} {noun}."),
    (4, "{name} is {verbing} {det} {noun} with {det} {adj} {noun}."),
    (4, "{name}'s {noun} is {adj}, isn't it?"),
    (4, "they {verbed} {small} {nouns} in {month} {year}."),
    (3, '"{verb} the {noun}!" said {name}.'),
    (3, "do not {verb} the {noun}: it is {adj}."),
    (3, "on {day}, {small} {nouns} {verbed} the {noun}!"),
    (3, "the {noun} (a {adj} one) was {verbed} in {place}."),
    (3, "{name} {verbed} {det} {noun} at {time} on {day}."),
    (3, "the {noun} from {place} cost ${price}."),
    (3, "about {pct}% of the {nouns} were {adj}."),
    (3, "the {adj}-{adj} {noun} weighs {num}.{digit} kg."),
    (3, "{name} will {verb} {det} {noun} on {date}."),
    (3, "room {num}, {big} {noun} lane, {place}."),
    (2, "{name} & {name} {verbed} {det} {noun} in {year}."),
    (2, "item #{num}: {small} {adj} {nouns}; {num} {nouns}."),
    (2, "call {phone} before {time} about the {noun}."),
    (2, "{num} + {num} = {sum} {nouns}, said {name}."),
    (2, "{num} * {digit} {nouns} and {num}/{digit} of a {noun}."),
    (2, "if x < {num} and y > {num} then {adj} {nouns} win."),
    (2, "write to {lname}@{lplace}.org or {lname}_{lnoun}@{lnoun}.net."),
    (2, "see [{num}] and [{num}, p. {big}] on the {noun}."),
    (2, "the file is C:\\{lnoun}\\{lnoun}_{num}.txt on {day}."),
    (2, "area = {num}^2, so ~{big} {nouns} fit."),
    (2, "the set {{{noun}, {noun}, {noun}}} is {adj}."),
    (2, "choose {noun} | {noun} | {noun}, not {adj}."),
    (2, "the word `{lnoun}` means {adj} in {place}."),
    (2, "~{num} {nouns} ({pct}%) went to {place}."),
    (2, "{name} said: 'the {noun} is {adj} and {adj}.'"),
    (2, "QUIZ {num}: which {noun} {verbs} the {noun}?"),
    (1, "{noun} <{lnoun}> {verbs} {{{lnoun}}} [{lnoun}] ^{digit}"),
    (1, "x = {num}; y = x * {digit} + {num}; z = y / {digit}"),
    (1, "{name} paid ${price} + {pct}% tax = ${price}!"),
)

_SLOT = re.compile(r"\{(\w+)\}")
_FIRST_LETTER = re.compile(r"[A-Za-z]")


class WordListError(ValueError):
    """A word list that cannot be used; the message names the file, line and problem."""


@dataclasses.dataclass(frozen=True)
class WordList:
    """The words of every section, with the inflected forms the patterns ask for."""

    nouns: tuple  # (singular, plural) pairs
    verbs: tuple  # (base, s-form, past, ing-form)
    adjectives: tuple
    adverbs: tuple
    names: tuple
    places: tuple
    days: tuple
    months: tuple

    def distinct_words(self) -> set:
        """Every distinct word form the patterns can write from the list."""
        words = set()
        for group in (self.nouns, self.verbs):
            for forms in group:
                words.update(forms)
        for group in (self.adjectives, self.adverbs, self.names, self.places, self.days):
            words.update(group)
        return words | set(self.months)


def load_words(path=WORDS_FILE) -> WordList:
    """Reads the word list (format described at the top of the file)."""
    sections = {name: [] for name in SECTIONS}
    current = None
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                name = line.strip("[]")
                if not line.endswith("]") or name not in sections:
                    raise WordListError(
                        f"{path}, line {number}: unknown section {line!r}; known: {SECTIONS}"
                    )
                current = name
                continue
            if current is None:
                raise WordListError(f"{path}, line {number}: {line!r} comes before any section")
            if not all(" " < c <= "~" for c in line):
                raise WordListError(
                    f"{path}, line {number}: {line!r} holds spaces or non-ASCII characters"
                )
            fields = line.split("|")
            limit = {"noun": 2, "verb": 4}.get(current, 1)
            if len(fields) > limit or not fields[0]:
                raise WordListError(
                    f"{path}, line {number}: {line!r} has {len(fields)} forms; "
                    f"section [{current}] takes at most {limit}"
                )
            sections[current].append(fields)
    empty = [name for name, entries in sections.items() if not entries]
    if empty:
        raise WordListError(f"{path}: sections without words: {empty}")
    return WordList(
        nouns=tuple(_noun_forms(f) for f in sections["noun"]),
        verbs=tuple(_verb_forms(f) for f in sections["verb"]),
        adjectives=tuple(f[0] for f in sections["adjective"]),
        adverbs=tuple(f[0] for f in sections["adverb"]),
        names=tuple(f[0] for f in sections["name"]),
        places=tuple(f[0] for f in sections["place"]),
        days=tuple(f[0] for f in sections["day"]),
        months=tuple(f[0] for f in sections["month"]),
    )


def _ends_with_consonant_y(word: str) -> bool:
    return len(word) > 1 and word[-1] == "y" and word[-2] not in "aeiou"


def _noun_forms(fields: list) -> tuple:
    singular = fields[0]
    if len(fields) > 1 and fields[1]:
        return singular, fields[1]
    if singular.endswith(("s", "x", "z", "ch", "sh")):
        return singular, singular + "es"
    if _ends_with_consonant_y(singular):
        return singular, singular[:-1] + "ies"
    return singular, singular + "s"


def _verb_forms(fields: list) -> tuple:
    base = fields[0]
    given = fields[1:] + [""] * (4 - len(fields))
    if base.endswith(("s", "x", "z", "ch", "sh", "o")):
        s_form = base + "es"
    elif _ends_with_consonant_y(base):
        s_form = base[:-1] + "ies"
    else:
        s_form = base + "s"
    if base.endswith("e"):
        past = base + "d"
    elif _ends_with_consonant_y(base):
        past = base[:-1] + "ied"
    else:
        past = base + "ed"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        ing = base[:-1] + "ing"
    else:
        ing = base + "ing"
    return base, given[0] or s_form, given[1] or past, given[2] or ing


class TextSource:
    """Draws sentences and wraps them into lines.

    Args:
        words: the `WordList`.
        rng: a `numpy.random.Generator`; it alone decides every draw.
    """

    def __init__(self, words: WordList, rng):
        self.words = words
        self.rng = rng
        weights = [w for w, _ in PATTERNS]
        total = float(sum(weights))
        self._pattern_p = [w / total for w in weights]
        self._pending = []  # words of the running paragraph not yet on a line

    def _pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def _slot(self, name: str) -> str:
        rng, words = self.rng, self.words
        if name == "noun":
            return self._pick(words.nouns)[0]
        if name == "nouns":
            return self._pick(words.nouns)[1]
        if name == "lnoun":
            return self._pick(words.nouns)[0].lower()
        if name in ("verb", "verbs", "verbed", "verbing"):
            form = ("verb", "verbs", "verbed", "verbing").index(name)
            return self._pick(words.verbs)[form]
        if name == "adj":
            return self._pick(words.adjectives)
        if name == "adv":
            return self._pick(words.adverbs)
        if name == "name":
            return self._pick(words.names)
        if name == "lname":
            return self._pick(words.names).lower()
        if name == "place":
            return self._pick(words.places)
        if name == "lplace":
            return self._pick(words.places).lower()
        if name == "day":
            return self._pick(words.days)
        if name == "month":
            return self._pick(words.months)
        if name == "det":
            return self._pick(("the", "a", "this", "that", "my", "our", "her", "his", "their"))
        if name == "dets":
            return self._pick(("the", "these", "those", "my", "our", "some", "all the"))
        if name == "small":
            return self._pick(("two", "three", "four", "five", "six", "seven", "some", "many"))
        if name == "digit":
            return str(int(rng.integers(2, 10)))
        if name in ("num", "sum"):
            return str(int(rng.integers(1, 100)))
        if name == "big":
            return str(int(rng.integers(100, 10000)))
        if name == "year":
            return str(int(rng.integers(1850, 2031)))
        if name == "pct":
            return str(int(rng.integers(1, 100)))
        if name == "price":
            return f"{int(rng.integers(1, 500))}.{int(rng.integers(0, 100)):02d}"
        if name == "time":
            return f"{int(rng.integers(1, 13))}:{int(rng.integers(0, 60)):02d}"
        if name == "date":
            return (
                f"{int(rng.integers(1, 29))}/{int(rng.integers(1, 13))}/{rng.integers(1950, 2031)}"
            )
        if name == "phone":
            return (
                f"0{rng.integers(100, 1000)}-{rng.integers(100, 1000)}-{rng.integers(1000, 10000)}"
            )
        raise KeyError(f"pattern slot {{{name}}} has no filler")

    def sentence(self) -> str:
        """One sentence from a pattern drawn by weight, its first letter capitalised."""
        index = int(self.rng.choice(len(PATTERNS), p=self._pattern_p))
        pattern = PATTERNS[index][1]
        text = _SLOT.sub(lambda m: self._slot(m.group(1)), pattern)
        text = text.replace("{{", "{").replace("}}", "}")
        text = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)
        first = _FIRST_LETTER.search(text)
        if first is None:
            return text
        return text[: first.start()] + text[first.start()].upper() + text[first.start() + 1 :]

    def line(self) -> str:
        """The next line of the running paragraph, `MIN_CHARS`..`MAX_CHARS` characters."""
        width = int(self.rng.integers(WRAP_WIDTHS[0], WRAP_WIDTHS[1] + 1))
        line = ""
        while True:
            if not self._pending:
                self._pending = self.sentence().split(" ")[::-1]
            word = self._pending[-1]
            candidate = f"{line} {word}" if line else word
            fits = len(candidate) <= width or (
                len(line) < MIN_CHARS and len(candidate) <= MAX_CHARS
            )
            if not fits:
                if line:
                    return line
                self._pending.pop()  # a word longer than any line: dropped
                continue
            line = candidate
            self._pending.pop()


def unique_lines(source: TextSource, count: int, taken: set) -> list:
    """The next `count` lines of `source` that are not in `taken`; adds them to `taken`."""
    lines = []
    while len(lines) < count:
        line = source.line()
        if len(line) >= MIN_CHARS and line not in taken:
            taken.add(line)
            lines.append(line)
    return lines

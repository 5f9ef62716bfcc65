"""BERT WordPiece tokenizer (docs/model-spec.md section 2): reference for core/src/tokenizer.cpp.

The spec allows the C++ engine to cover only a subset of Unicode. This module implements exactly
the same subset, so that both give identical ids for every input:

* Character classes (dropped control, whitespace, punctuation) come from ``unicodedata``, but only
  inside the blocks listed in ``CLASSIFIED_BLOCKS``. Outside them every character is an ordinary
  letter (kept, not split), except the CJK ideograph ranges of the spec, which are always split.
  The C++ engine has hand-written tables for these blocks; the parity data
  (tests/data/tokenizer_cases.json) checks every code point of these blocks.
* Lowercasing is the simple lowercase mapping, applied per character (so no final-sigma rule),
  and only for ASCII, U+00C0..U+017F, Greek (U+0370..U+03FF) and Cyrillic (U+0400..U+052F).
  Everything else (Latin Extended-B, Armenian, ...) is kept as is.
* Accent stripping (NFD, then drop Mn) is applied only to U+00C0..U+017F (after lowercasing), and
  the combining diacritical marks U+0300..U+036F are dropped. Other precomposed letters, such as
  Greek with tonos, keep their accents.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
MAX_WORD_CHARS = 100  # longer words are [UNK] (spec step 5)

# Blocks in which control / whitespace / punctuation are recognised (inclusive ranges). Keep in
# sync with the file comment and the range tables of core/src/tokenizer.cpp.
CLASSIFIED_BLOCKS = (
    (0x0000, 0x052F),  # Basic Latin .. Cyrillic Supplement
    (0x1680, 0x169F),  # Ogham (space mark, feather marks)
    (0x2000, 0x206F),  # General Punctuation
    (0x2E00, 0x2E7F),  # Supplemental Punctuation
    (0x3000, 0x303F),  # CJK Symbols and Punctuation
    (0xFE10, 0xFE1F),  # Vertical Forms
    (0xFE30, 0xFE6F),  # CJK Compatibility Forms, Small Form Variants
    (0xFEFF, 0xFEFF),  # zero width no-break space (BOM)
    (0xFF00, 0xFFFF),  # Halfwidth and Fullwidth Forms, Specials
    (0xE0000, 0xE007F),  # Tags
)

# Ranges whose uppercase letters are lowercased.
LOWERCASED_RANGES = (
    (0x0041, 0x005A),
    (0x00C0, 0x017F),
    (0x0370, 0x03FF),
    (0x0400, 0x052F),
)
ACCENT_STRIPPED_RANGE = (0x00C0, 0x017F)
COMBINING_MARKS_RANGE = (0x0300, 0x036F)

CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2A6DF),
)


def _in_ranges(cp: int, ranges) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def is_valid_utf8(data: bytes) -> bool:
    """Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF), as Python decodes it."""
    try:
        data.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def is_dropped(ch: str) -> bool:
    """U+0000, U+FFFD and Cc/Cf control characters except tab, newline and carriage return."""
    cp = ord(ch)
    if cp == 0 or cp == 0xFFFD:
        return True
    if ch in "\t\n\r" or not _in_ranges(cp, CLASSIFIED_BLOCKS):
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def is_whitespace(ch: str) -> bool:
    """Tab, newline, carriage return, space and category Zs (all Zs lie in CLASSIFIED_BLOCKS)."""
    if ch in " \t\n\r":
        return True
    return _in_ranges(ord(ch), CLASSIFIED_BLOCKS) and unicodedata.category(ch) == "Zs"


def is_punctuation(ch: str) -> bool:
    """ASCII 33-47, 58-64, 91-96, 123-126, plus category P* inside CLASSIFIED_BLOCKS."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return _in_ranges(cp, CLASSIFIED_BLOCKS) and unicodedata.category(ch).startswith("P")


def is_cjk(ch: str) -> bool:
    return _in_ranges(ord(ch), CJK_RANGES)


def simple_lowercase(ch: str) -> str:
    """Simple (one code point) lowercase mapping inside LOWERCASED_RANGES; else ``ch``.

    ``str.lower`` gives the full mapping; within our ranges the only multi-character result is
    U+0130 (capital I with dot) -> "i" + U+0307, whose simple mapping is its first character.
    """
    if not _in_ranges(ord(ch), LOWERCASED_RANGES):
        return ch
    return ch.lower()[0]


def normalize_char(ch: str) -> str:
    """Lowercase and strip accents (spec step 3) for one character: returns "" or one character."""
    cp = ord(ch)
    if COMBINING_MARKS_RANGE[0] <= cp <= COMBINING_MARKS_RANGE[1]:
        return ""
    low = simple_lowercase(ch)
    if ACCENT_STRIPPED_RANGE[0] <= ord(low) <= ACCENT_STRIPPED_RANGE[1]:
        decomposed = unicodedata.normalize("NFD", low)
        base = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
        assert len(base) == 1, (ch, base)
        return base
    return low


def load_vocab(text: str) -> list[str]:
    """Vocabulary from the `strand.vocab` metadata string: tokens joined by "\\n".

    A single trailing newline (as in a vocab.txt file) is ignored; empty tokens are invalid anyway.
    """
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n")


def load_vocab_file(path: str | Path) -> list[str]:
    """Vocabulary from a vocab.txt file (one token per line, UTF-8)."""
    return load_vocab(Path(path).read_text(encoding="utf-8"))


class WordPieceTokenizer:
    """BERT WordPiece (spec section 2) restricted to the Unicode subset of the C++ engine.

    ``encode`` returns ``[CLS] pieces... [SEP]`` truncated to ``max_positions`` (the last id is
    always ``[SEP]``). ``words`` returns every word of the whole text (not truncated) with whether
    WordPiece found it without falling back to ``[UNK]``, as ``WordPieceTokenizer::words`` in C++.
    """

    def __init__(self, vocab: list[str], lowercase: bool = True, max_positions: int = 512):
        if max_positions < 2:
            raise ValueError(f"max_positions must be at least 2, got {max_positions}")
        ids: dict[str, int] = {}
        for index, token in enumerate(vocab):
            if not token:
                raise ValueError(f"vocabulary token {index} is empty")
            if token in ids:
                raise ValueError(
                    f"vocabulary token {token!r} repeats (ids {ids[token]} and {index})")
            ids[token] = index
        for special in SPECIAL_TOKENS:
            if special not in ids:
                raise ValueError(f"vocabulary lacks {special}")
        self.vocab = list(vocab)
        self.lowercase = lowercase
        self.max_positions = max_positions
        self._ids = ids
        self._unk = ids["[UNK]"]
        self._max_token_chars = max(len(t) for t in vocab)

    def id(self, token: str) -> int:
        """Id of ``token``, or -1 if absent."""
        return self._ids.get(token, -1)

    @staticmethod
    def _check_text(text: str | bytes) -> str:
        if isinstance(text, bytes):
            try:
                return text.decode("utf-8", errors="strict")
            except UnicodeDecodeError as e:
                raise ValueError(f"prompt is not valid UTF-8: {e}") from None
        try:
            text.encode("utf-8", errors="strict")  # lone surrogates cannot be encoded
        except UnicodeEncodeError as e:
            raise ValueError(f"prompt is not valid UTF-8: {e}") from None
        return text

    def _iter_words(self, text: str) -> Iterator[str]:
        """Steps 2-4: clean, normalize, split on whitespace, punctuation and CJK ideographs."""
        word: list[str] = []
        for ch in text:
            if is_dropped(ch):
                continue
            if is_whitespace(ch):
                if word:
                    yield "".join(word)
                    word = []
                continue
            if self.lowercase:
                ch = normalize_char(ch)
                if not ch:
                    continue
            if is_punctuation(ch) or is_cjk(ch):
                if word:
                    yield "".join(word)
                    word = []
                yield ch
                continue
            word.append(ch)
        if word:
            yield "".join(word)

    def _wordpiece(self, word: str) -> list[int] | None:
        """Step 5: greedy longest-match-first pieces, or None when the word is [UNK]."""
        if len(word) > MAX_WORD_CHARS:
            return None
        pieces: list[int] = []
        start = 0
        while start < len(word):
            prefix = "##" if start > 0 else ""
            end = min(len(word), start + self._max_token_chars)
            found = -1
            while end > start:
                found = self._ids.get(prefix + word[start:end], -1)
                if found >= 0:
                    break
                end -= 1
            if found < 0:
                return None
            pieces.append(found)
            start = end
        return pieces

    def encode(self, text: str | bytes) -> list[int]:
        """Ids ``[CLS] ... [SEP]`` (spec step 6). Raises ValueError on invalid UTF-8."""
        text = self._check_text(text)
        budget = self.max_positions - 2  # room for pieces between [CLS] and [SEP]
        ids = [self._ids["[CLS]"]]
        for word in self._iter_words(text):
            if len(ids) - 1 >= budget:
                break
            pieces = self._wordpiece(word)
            ids.extend(pieces if pieces is not None else [self._unk])
        del ids[1 + budget :]
        ids.append(self._ids["[SEP]"])
        return ids

    def words(self, text: str | bytes) -> list[tuple[str, bool]]:
        """Every word as the tokenizer splits it, with whether it is known (not [UNK])."""
        text = self._check_text(text)
        return [(w, self._wordpiece(w) is not None) for w in self._iter_words(text)]

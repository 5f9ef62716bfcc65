"""Tests of the reference WordPiece tokenizer (training/strand_ref/tokenizer.py).

Expectations are written by hand as token strings (or come from independent sources: Python's
``string.punctuation``, the Unicode Zs list, HF transformers' BertTokenizer when installed), never
copied from the tokenizer's own output. The last test checks that the committed parity data for
the C++ engine (tests/data/tokenizer_cases.json) is what the generator produces today.
"""

from __future__ import annotations

import json
import random
import string
import sys
import time
from pathlib import Path

import pytest

TRAINING = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TRAINING))

from strand_ref.tokenizer import (  # noqa: E402
    WordPieceTokenizer,
    is_punctuation,
    is_valid_utf8,
    is_whitespace,
    load_vocab,
    load_vocab_file,
    normalize_char,
)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "sun", "##set", "##rise", "over", "the", "lake",
         "mountains", "!", ",", ".", "-", "(", ")", "$", "creme", "brulee", "a", "##a", "中", "日",
         "ω", "σ", "ø", "ночь", "。", "！", "Sun", "é", "x", "##x"]


def ids(tok: WordPieceTokenizer, tokens: list[str]) -> list[int]:
    out = [tok.id(t) for t in tokens]
    assert -1 not in out, f"test vocabulary lacks one of {tokens}"
    return out


@pytest.fixture()
def tok() -> WordPieceTokenizer:
    return WordPieceTokenizer(VOCAB, lowercase=True, max_positions=32)


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("", []),
        (" \t\r\n ", []),
        ("Sunset over the lake", ["sun", "##set", "over", "the", "lake"]),
        ("SUNRISE, over the MOUNTAINS!", ["sun", "##rise", ",", "over", "the", "mountains", "!"]),
        ("(sunset)-lake.", ["(", "sun", "##set", ")", "-", "lake", "."]),
        ("$sun", ["$", "sun"]),  # ASCII symbols count as punctuation (spec step 4)
        ("sunsets", ["[UNK]"]),  # no ##s: the whole word is unknown, not a partial match
        ("sunxx", ["sun", "##x", "##x"]),
        ("Crème Brûlée", ["creme", "brulee"]),
        ("CRÈME BRÛLÉE", ["creme", "brulee"]),
        ("creme\u0300", ["creme"]),  # combining marks U+0300..U+036F are dropped
        ("Ø ø", ["ø", "ø"]),  # no canonical decomposition: lowercased, not stripped
        ("Ω Σ σ", ["ω", "σ", "σ"]),  # per-character simple lowercase, no final-sigma rule
        ("НОЧЬ Ночь", ["ночь", "ночь"]),
        ("中日x", ["中", "日", "x"]),  # CJK ideographs split off
        ("lake。sun！", ["lake", "。", "sun", "！"]),  # CJK and fullwidth punctuation
        ("sun\u200bset la\u00adke", ["sun", "##set", "lake"]),  # Cf dropped, joining the halves
        ("sun\x00set\x07 la\ufffdke", ["sun", "##set", "lake"]),  # NUL, Cc and U+FFFD dropped
        ("sun\u00a0lake\u3000over\u2003the", ["sun", "lake", "over", "the"]),  # Zs is whitespace
        ("sun\u2028lake", ["[UNK]"]),  # Zl is neither whitespace nor control (spec step 2)
        ("sun\u2014lake\u2026", ["sun", "[UNK]", "lake", "[UNK]"]),  # General Punctuation
        ("«sun»", ["[UNK]", "sun", "[UNK]"]),
        ("sun\u060clake", ["[UNK]"]),  # Arabic comma: outside the covered blocks, not split
        ("ǄUN", ["[UNK]"]),  # Latin Extended-B is not lowercased
    ],
)
def test_encode_hand_written(tok, text, tokens):
    assert tok.encode(text) == ids(tok, ["[CLS]", *tokens, "[SEP]"])


def test_words_flags(tok):
    assert tok.words("Sunset, Ωmega 中 sunsets") == [
        ("sunset", True), (",", True), ("ωmega", False), ("中", True), ("sunsets", False)]
    assert tok.words("\u200b \t") == []


def test_long_words(tok):
    hundred = tok.encode("a" * 100)
    assert len(hundred) == 32 and hundred[1:3] == ids(tok, ["a", "##a"])
    assert tok.encode("a" * 101) == ids(tok, ["[CLS]", "[UNK]", "[SEP]"])
    assert tok.words("é" * 100) == [("e" * 100, False)]  # 100 code points after stripping
    assert tok.words("a" * 100 + "\u0301") == [("a" * 100, True)]  # the mark is dropped first
    cased = WordPieceTokenizer(VOCAB, lowercase=False, max_positions=32)
    assert cased.words("a" * 100 + "\u0301") == [("a" * 100 + "\u0301", False)]  # 101 > 100


@pytest.mark.parametrize("max_positions", [2, 3, 4, 6, 12])
def test_truncation_keeps_sep_last(max_positions):
    tok = WordPieceTokenizer(VOCAB, lowercase=True, max_positions=max_positions)
    pieces = ["sun", "##set", "over", "the", "lake", "sun", "##rise", "over", "the", "mountains"]
    expected = ["[CLS]", *pieces[: max_positions - 2], "[SEP]"]
    assert tok.encode("sunset over the lake sunrise over the mountains") == ids(tok, expected)


def test_cased_keeps_case_and_accents():
    tok = WordPieceTokenizer(VOCAB, lowercase=False, max_positions=32)
    assert tok.encode("Sunset é É") == ids(tok, ["[CLS]", "Sun", "##set", "é", "[UNK]", "[SEP]"])


def test_megabyte_prompt_is_fast_and_truncated(tok):
    prompt = "Sunset over the lake, mountains! " * 32768  # ~1 MB
    start = time.perf_counter()
    out = tok.encode(prompt)
    assert time.perf_counter() - start < 2.0
    period = ids(tok, ["sun", "##set", "over", "the", "lake", ",", "mountains", "!"])
    assert out == ids(tok, ["[CLS]"]) + (period * 4)[:30] + ids(tok, ["[SEP]"])
    with pytest.raises(ValueError):
        tok.encode(prompt.encode() + b"\xff")  # the tail past truncation is still validated


@pytest.mark.parametrize(
    "data, valid",
    [(b"", True), (b"abc", True), ("ночь 東京 🌅".encode(), True), (b"\xf4\x8f\xbf\xbf", True),
     (b"\xc0\xaf", False), (b"\xe0\x80\xaf", False), (b"\xed\xa0\x80", False),
     (b"\xf4\x90\x80\x80", False), (b"\xe2\x82", False), (b"\x80", False), (b"\xff", False)],
)
def test_utf8_validation(tok, data, valid):
    assert is_valid_utf8(data) == valid
    if valid:
        tok.encode(data)
    else:
        with pytest.raises(ValueError):
            tok.encode(data)
        with pytest.raises(ValueError):
            tok.words(data)


def test_lone_surrogate_is_invalid(tok):
    with pytest.raises(ValueError):
        tok.encode("sun\ud800set")


def test_ascii_punctuation_is_exactly_the_spec_ranges():
    assert {chr(c) for c in range(128) if is_punctuation(chr(c))} == set(string.punctuation)


def test_whitespace_is_exactly_tab_newline_cr_and_zs():
    zs = [0x20, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000]
    expected = {0x09, 0x0A, 0x0D, *zs}
    assert {c for c in range(0x10000) if is_whitespace(chr(c))} == expected


@pytest.mark.parametrize(
    "source, folded",
    [("ÀÁÂÃÄÅàáâãäå", "aaaaaaaaaaaa"), ("ÇçĆĉČ", "ccccc"), ("ÈÉÊËĒĚ", "eeeeee"), ("ÑñŃŇ", "nnnn"),
     ("ÝýÿŸŶ", "yyyyy"), ("ŠšŚŞ", "ssss"), ("ŽžŹŻ", "zzzz"), ("İıĨĮ", "iıii"),
     ("ÆæÐðØøÞþß", "ææððøøþþß"), ("ĐđĦħĲĳĿŀŁłŊŋŒœŦŧĸŉſ", "đđħħĳĳŀŀłłŋŋœœŧŧĸŉſ"), ("×÷", "×÷"),
     ("ÅNGSTRÖM", "angstrom"), ("Ά", "ά"), ("Ё", "ё"), ("Ḁ", "Ḁ"), ("Ա", "Ա")],
)
def test_lowercase_and_accent_table(source, folded):
    assert "".join(normalize_char(c) for c in source) == folded


def test_constructor_errors():
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        with pytest.raises(ValueError, match="lacks"):
            WordPieceTokenizer([t for t in VOCAB if t != special])
    with pytest.raises(ValueError, match="repeats"):
        WordPieceTokenizer(VOCAB + ["lake"])
    with pytest.raises(ValueError, match="empty"):
        WordPieceTokenizer(VOCAB + [""])
    with pytest.raises(ValueError, match="max_positions"):
        WordPieceTokenizer(VOCAB, max_positions=1)
    assert WordPieceTokenizer(VOCAB, max_positions=2).encode("sun") == [2, 3]


def test_id_lookup(tok):
    assert tok.id("[PAD]") == 0 and tok.id("##set") == 5 and tok.id("set") == -1


def test_load_vocab(tmp_path):
    assert load_vocab("[PAD]\n[UNK]\nsun") == ["[PAD]", "[UNK]", "sun"]
    assert load_vocab("[PAD]\n[UNK]\nsun\n") == ["[PAD]", "[UNK]", "sun"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    assert load_vocab_file(path) == VOCAB


def test_matches_hf_bert_tokenizer_on_covered_text(tmp_path):
    """Independent reference: HF's (slow, pure Python) BertTokenizer, where the spec and BERT agree.

    BERT splits more CJK ranges and lowercases every script; these prompts stay inside the subset
    where both must agree exactly (ASCII, Latin-1, Latin Extended-A, General and CJK punctuation,
    fullwidth ASCII punctuation, CJK Unified Ideographs). Skipped when transformers is not
    installed.
    """
    transformers = pytest.importorskip("transformers")
    sys.path.insert(0, str(TRAINING))
    import make_tokenizer_cases

    vocab = make_tokenizer_cases.build_vocab()
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    hf = transformers.BertTokenizer(str(path), do_lower_case=True)
    ours = WordPieceTokenizer(vocab, lowercase=True, max_positions=64)
    candidates = make_tokenizer_cases.HAND_WRITTEN + make_tokenizer_cases.random_texts(
        random.Random(7), 300, vocab)

    # Excluded on purpose: "[" (BERT never splits its special tokens) and U+2028 / U+2029, which
    # BERT splits on (Python's str.split) but the spec does not count as whitespace.
    def covered(ch: str) -> bool:
        cp = ord(ch)
        return (cp < 0x180 or 0x2000 <= cp <= 0x206F or 0x3000 <= cp <= 0x303F or
                0x4E00 <= cp <= 0x9FFF or 0xFF01 <= cp <= 0xFF0F) and ch not in "[\u2028\u2029"

    prompts = [p for p in candidates if all(covered(c) for c in p)]
    prompts += make_tokenizer_cases.truncation_texts()
    assert len(prompts) > 100
    for prompt in prompts:
        expected = hf.encode(prompt, add_special_tokens=True, truncation=True, max_length=64)
        assert ours.encode(prompt) == expected, prompt


def test_committed_parity_data_is_current():
    sys.path.insert(0, str(TRAINING))
    import make_tokenizer_cases

    committed = TRAINING.parent / "tests" / "data" / "tokenizer_cases.json"
    fresh = json.loads(make_tokenizer_cases.dumps(make_tokenizer_cases.make_cases()))
    assert json.loads(committed.read_text(encoding="utf-8")) == fresh, (
        "tests/data/tokenizer_cases.json is stale: run training/make_tokenizer_cases.py")

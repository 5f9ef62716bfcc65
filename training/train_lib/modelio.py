"""Model configs, the text encoder source, export and resume for training.

The shipped model conditions on the pretrained all-MiniLM-L6-v2 sentence encoder (converted by
training/convert_minilm.py into .deps/models/text-encoder-minilm-l6-v2.safetensors). Its 22M
parameters are frozen and live in that separate file: the model file names it in
config "text": {"encoder_file": ...} and holds only what training changes, which keeps each model
file under the 16 MiB a GPU run can hand back. Without the converted file, training falls back to
the model's own small BERT (random, frozen) and warns: such a model follows keywords only.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from strand_ref.config import StrandConfig
from strand_ref.export import CONFIG_KEY, VOCAB_KEY, read_tensors, write_tensors
from strand_ref.init import default_vocab, init_model
from strand_ref.model import StrandModel

TRAINING = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TRAINING)
ENCODER_FILE_NAME = "text-encoder-minilm-l6-v2.safetensors"
DEFAULT_ENCODER = os.path.join(REPO, ".deps", "models", ENCODER_FILE_NAME)
TEXT_PREFIX = "text_encoder."
MAX_FILE_BYTES = 16 * 2**20

# The proposed shipped config (docs/model-card.md): 256x144 at 12 fps, 8x autoencoder to 32x18x8,
# patch 2 -> 144 tokens per frame, 3 frames (432 tokens) per block. Width and depth are set by
# the real-time budget of the 2-core CPU engine (model card: "Size").
BASE_CONFIG = {
    "format": "strand-model", "version": 1, "name": "strand-world-v1",
    "video": {"width": 256, "height": 144, "fps": 12},
    "latent_channels": 8,
    "autoencoder": {"channels": [16, 32, 64, 128]},
    "dit": {"dim": 160, "heads": 5, "mlp_dim": 480, "patch": 2, "frames_per_block": 3,
            "freq_dim": 64, "rope_theta": 10000.0,
            "layers": ["hybrid"] * 6, "softmax_kv_window": 0, "softmax_kv_sink": 0},
    # Own small encoder (fallback); replaced by the pretrained encoder's sizes when present.
    "text": {"dim": 128, "layers": 2, "heads": 4, "intermediate": 256, "max_positions": 64,
             "lowercase": True},
    "sampler": {"sigmas": [1.0, 0.75, 0.5, 0.25]},
}


@dataclass
class TextSource:
    encoder: Optional[torch.nn.Module]  # the pretrained encoder (None: the model's own)
    config: Dict[str, object]           # spec "text" section (dim, layers, ...)
    vocab: List[str]
    encoder_file: Optional[str]         # path of the converted file, None for the fallback; for
    # a vocabulary-pruned training copy (training/prune_text_encoder.py) the full file it stands
    # for, next to it: exported models name that one (the engine runs the full encoder)
    allowed_ids: Optional[frozenset] = None  # pruned copy: the only token ids it can embed


def fallback_vocab() -> List[str]:
    """The default vocabulary plus every word the world's prompts use."""
    import world_vocab

    vocab = default_vocab()
    known = set(vocab)
    vocab += [w for w in world_vocab.all_words() if w not in known]
    return vocab


def load_text_source(path: Optional[str], required: bool = False) -> TextSource:
    if path and os.path.isfile(path):
        from convert_minilm import load_text_encoder

        encoder, cfg, vocab = load_text_encoder(path)
        text = {"dim": int(cfg["dim"]), "layers": int(cfg["layers"]), "heads": int(cfg["heads"]),
                "intermediate": int(cfg["intermediate"]),
                # must equal the encoder file's: the engine checks every size against it
                "max_positions": int(cfg["max_positions"]),
                "lowercase": bool(cfg.get("lowercase", True))}
        named = os.path.abspath(path)
        if getattr(encoder, "full_file", None):
            named = os.path.join(os.path.dirname(named), os.path.basename(encoder.full_file))
        return TextSource(encoder, text, list(vocab), named,
                          getattr(encoder, "kept_token_ids", None))
    if required:
        raise SystemExit(f"text encoder {path} not found: run python3 training/convert_minilm.py")
    warnings.warn(f"pretrained text encoder {path!r} not found (python3 training/convert_minilm.py "
                  "makes it); falling back to the model's own small random encoder, which "
                  "follows keywords only")
    return TextSource(None, dict(BASE_CONFIG["text"]), fallback_vocab(), None)


def make_config(overrides: Dict[str, object], text: Dict[str, object]) -> StrandConfig:
    """BASE_CONFIG with dotted-key overrides ("dit.dim": 256, "name": ...) and the text section."""
    raw = json.loads(json.dumps(BASE_CONFIG))
    raw["text"] = {k: text[k] for k in ("dim", "layers", "heads", "intermediate",
                                         "max_positions", "lowercase")}
    for key, value in overrides.items():
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return StrandConfig.from_dict(raw)


def new_model(config: StrandConfig, text: TextSource, seed: int) -> StrandModel:
    model = StrandModel(config, len(text.vocab))
    init_model(model, seed)
    if text.encoder is not None:
        model.text_encoder.load_state_dict(text.encoder.state_dict())
    return model


def _config_json(config: StrandConfig, encoder_file: Optional[str]) -> str:
    raw = config.to_dict()
    if encoder_file:
        raw["text"]["encoder_file"] = os.path.basename(encoder_file)
    return json.dumps(raw)


def trained_state(model: StrandModel, encoder_file: Optional[str]) -> Dict[str, torch.Tensor]:
    """The tensors a model file holds: everything, less the external frozen encoder."""
    state = model.state_dict()
    if encoder_file:
        state = {k: v for k, v in state.items() if not k.startswith(TEXT_PREFIX)}
    return state


def export(path: str, model: StrandModel, vocab: List[str], encoder_file: Optional[str],
           state: Optional[Dict[str, torch.Tensor]] = None) -> str:
    """Writes the model (F32, or F16 when F32 would reach 16 MiB). Returns the dtype used."""
    state = trained_state(model, encoder_file) if state is None else state
    numel = sum(int(v.numel()) for v in state.values())
    dtype = "F32" if numel * 4 + 2**20 < MAX_FILE_BYTES else "F16"
    metadata = {CONFIG_KEY: _config_json(model.config, encoder_file), VOCAB_KEY: "\n".join(vocab)}
    write_tensors(path, {k: v.detach().float().cpu() for k, v in state.items()}, metadata, dtype)
    size = os.path.getsize(path)
    if size >= MAX_FILE_BYTES:
        warnings.warn(f"{path} is {size / 2**20:.1f} MiB, over the 16 MiB a GPU run can return")
    return dtype


def resolve_encoder_file(model_path: str, name: str) -> Optional[str]:
    for folder in (os.path.dirname(os.path.abspath(model_path)),
                   os.path.dirname(DEFAULT_ENCODER)):
        candidate = os.path.join(folder, os.path.basename(name))
        if os.path.isfile(candidate):
            return candidate
    return None


def load(path: str, encoder_path: Optional[str] = None) -> Tuple[StrandModel, TextSource]:
    """A model file written by `export` (or strand_ref.export.save_model) for resuming."""
    tensors, metadata = read_tensors(path)
    raw = json.loads(metadata[CONFIG_KEY])
    vocab = metadata[VOCAB_KEY].split("\n")
    encoder_name = raw["text"].pop("encoder_file", None)
    config = StrandConfig.from_dict(raw)
    text = TextSource(None, dict(raw["text"]), vocab, None)
    if encoder_name:
        found = encoder_path if encoder_path and os.path.isfile(encoder_path) else \
            resolve_encoder_file(path, encoder_name)
        if found is None:
            raise SystemExit(f"{path} needs the text encoder {encoder_name}: run "
                             "python3 training/convert_minilm.py")
        text = load_text_source(found, required=True)
        text.config = dict(raw["text"])
    model = StrandModel(config, len(vocab))
    expected = model.state_dict()
    state = {}
    for name, ref in expected.items():
        if name.startswith(TEXT_PREFIX) and encoder_name:
            continue
        if name not in tensors:
            raise SystemExit(f"{path}: tensor {name} missing")
        array = tensors[name]
        if tuple(array.shape) != tuple(ref.shape):
            raise SystemExit(f"{path}: {name} has shape {array.shape}, expected {tuple(ref.shape)}")
        state[name] = torch.from_numpy(np.asarray(array, dtype=np.float32))
    model.load_state_dict(state, strict=not encoder_name)
    if encoder_name:
        model.text_encoder.load_state_dict(text.encoder.state_dict())
    return model, text

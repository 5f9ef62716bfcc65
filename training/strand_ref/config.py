"""The model config of docs/model-spec.md section 1: parsing, validation and derived sizes.

The JSON lives in the safetensors `__metadata__["strand.config"]`. `StrandConfig.to_json()` writes
the keys in the spec's order so that exporting the same model twice gives identical bytes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, List

FORMAT = "strand-model"
VERSION = 1
LAYER_KINDS = ("hybrid", "softmax_kv")


class ConfigError(ValueError):
    """The config JSON is malformed or breaks a rule of the spec."""


def _req(obj: dict, key: str, kind, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise ConfigError(f"missing {where}{key}")
    value = obj[key]
    # bool is a subclass of int: reject it where a number is expected.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}{key} must be an integer")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}{key} must be a number")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}{key} must be a string")
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}{key} must be a boolean")
    if kind is list and not isinstance(value, list):
        raise ConfigError(f"{where}{key} must be a list")
    if kind is dict and not isinstance(value, dict):
        raise ConfigError(f"{where}{key} must be an object")
    return float(value) if kind is float else value


@dataclass
class StrandConfig:
    name: str
    width: int
    height: int
    fps: int
    latent_channels: int
    ae_channels: List[int]
    dim: int
    heads: int
    mlp_dim: int
    patch: int
    frames_per_block: int
    freq_dim: int
    rope_theta: float
    layers: List[str]
    softmax_kv_window: int
    softmax_kv_sink: int
    text_dim: int
    text_layers: int
    text_heads: int
    text_intermediate: int
    text_max_positions: int
    text_lowercase: bool
    sigmas: List[float] = field(default_factory=list)

    # ---- derived sizes (spec section 1) ----
    @property
    def stages(self) -> int:  # S
        return len(self.ae_channels) - 1

    @property
    def latent_height(self) -> int:  # h
        return self.height >> self.stages

    @property
    def latent_width(self) -> int:  # w
        return self.width >> self.stages

    @property
    def grid_height(self) -> int:  # h / p
        return self.latent_height // self.patch

    @property
    def grid_width(self) -> int:  # w / p
        return self.latent_width // self.patch

    @property
    def tokens_per_frame(self) -> int:  # T_f
        return self.grid_height * self.grid_width

    @property
    def tokens_per_block(self) -> int:  # T
        return self.frames_per_block * self.tokens_per_frame

    @property
    def head_dim(self) -> int:  # dh
        return self.dim // self.heads

    @property
    def patch_dim(self) -> int:  # C p p
        return self.latent_channels * self.patch * self.patch

    @property
    def latent_shape(self) -> tuple:  # [F, C, h, w]
        return (self.frames_per_block, self.latent_channels, self.latent_height, self.latent_width)

    @property
    def hybrid_layer_indices(self) -> List[int]:
        return [i for i, kind in enumerate(self.layers) if kind == "hybrid"]

    @property
    def softmax_layer_indices(self) -> List[int]:
        return [i for i, kind in enumerate(self.layers) if kind == "softmax_kv"]

    # ---- (de)serialisation ----
    @classmethod
    def from_json(cls, text: str) -> "StrandConfig":
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(f"config is not JSON: {exc}") from exc
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Any) -> "StrandConfig":
        if not isinstance(obj, dict):
            raise ConfigError("config must be a JSON object")
        if _req(obj, "format", str, "") != FORMAT:
            raise ConfigError(f"format must be {FORMAT!r}")
        if _req(obj, "version", int, "") != VERSION:
            raise ConfigError(f"unsupported version {obj['version']} (expected {VERSION})")
        video = _req(obj, "video", dict, "")
        ae = _req(obj, "autoencoder", dict, "")
        dit = _req(obj, "dit", dict, "")
        text = _req(obj, "text", dict, "")
        sampler = _req(obj, "sampler", dict, "")
        channels = _req(ae, "channels", list, "autoencoder.")
        layers = _req(dit, "layers", list, "dit.")
        sigmas = _req(sampler, "sigmas", list, "sampler.")
        for c in channels:
            if isinstance(c, bool) or not isinstance(c, int):
                raise ConfigError("autoencoder.channels must be integers")
        for s in sigmas:
            if isinstance(s, bool) or not isinstance(s, (int, float)):
                raise ConfigError("sampler.sigmas must be numbers")
        cfg = cls(
            name=_req(obj, "name", str, ""),
            width=_req(video, "width", int, "video."),
            height=_req(video, "height", int, "video."),
            fps=_req(video, "fps", int, "video."),
            latent_channels=_req(obj, "latent_channels", int, ""),
            ae_channels=list(channels),
            dim=_req(dit, "dim", int, "dit."),
            heads=_req(dit, "heads", int, "dit."),
            mlp_dim=_req(dit, "mlp_dim", int, "dit."),
            patch=_req(dit, "patch", int, "dit."),
            frames_per_block=_req(dit, "frames_per_block", int, "dit."),
            freq_dim=_req(dit, "freq_dim", int, "dit."),
            rope_theta=_req(dit, "rope_theta", float, "dit."),
            layers=list(layers),
            softmax_kv_window=_req(dit, "softmax_kv_window", int, "dit."),
            softmax_kv_sink=_req(dit, "softmax_kv_sink", int, "dit."),
            text_dim=_req(text, "dim", int, "text."),
            text_layers=_req(text, "layers", int, "text."),
            text_heads=_req(text, "heads", int, "text."),
            text_intermediate=_req(text, "intermediate", int, "text."),
            text_max_positions=_req(text, "max_positions", int, "text."),
            text_lowercase=_req(text, "lowercase", bool, "text."),
            sigmas=[float(s) for s in sigmas],
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        positive = {
            "video.width": self.width, "video.height": self.height, "video.fps": self.fps,
            "latent_channels": self.latent_channels, "dit.dim": self.dim, "dit.heads": self.heads,
            "dit.mlp_dim": self.mlp_dim, "dit.patch": self.patch,
            "dit.frames_per_block": self.frames_per_block, "dit.freq_dim": self.freq_dim,
            "text.dim": self.text_dim, "text.layers": self.text_layers,
            "text.heads": self.text_heads, "text.intermediate": self.text_intermediate,
            "text.max_positions": self.text_max_positions,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be positive")
        if not self.name:
            raise ConfigError("name must not be empty")
        if len(self.ae_channels) < 1 or any(c <= 0 for c in self.ae_channels):
            raise ConfigError("autoencoder.channels must be a non-empty list of positive integers")
        factor = 1 << self.stages
        if self.height % factor or self.width % factor:
            raise ConfigError(f"video size must be divisible by 2^S = {factor}")
        if self.latent_height % self.patch or self.latent_width % self.patch:
            raise ConfigError("latent size must be divisible by dit.patch")
        if self.dim % self.heads:
            raise ConfigError("dit.dim must be divisible by dit.heads")
        if self.head_dim % 2:
            raise ConfigError("head dim (dit.dim / dit.heads) must be even")
        if self.freq_dim % 2:
            raise ConfigError("dit.freq_dim must be even")
        if not (self.rope_theta > 0 and math.isfinite(self.rope_theta)):
            raise ConfigError("dit.rope_theta must be positive")
        if not self.layers:
            raise ConfigError("dit.layers must not be empty")
        for kind in self.layers:
            if kind not in LAYER_KINDS:
                raise ConfigError(f"unknown layer kind {kind!r}")
        if self.softmax_kv_window < 0 or self.softmax_kv_sink < 0:
            raise ConfigError("softmax_kv_window and softmax_kv_sink must be >= 0")
        if self.text_dim % self.text_heads:
            raise ConfigError("text.dim must be divisible by text.heads")
        if not self.sigmas:
            raise ConfigError("sampler.sigmas must not be empty")
        for i, s in enumerate(self.sigmas):
            if not (0.0 < s <= 1.0):
                raise ConfigError("sampler.sigmas must lie in (0, 1]")
            if i and not s < self.sigmas[i - 1]:
                raise ConfigError("sampler.sigmas must be strictly decreasing")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "name": self.name,
            "video": {"width": self.width, "height": self.height, "fps": self.fps},
            "latent_channels": self.latent_channels,
            "autoencoder": {"channels": list(self.ae_channels)},
            "dit": {"dim": self.dim, "heads": self.heads, "mlp_dim": self.mlp_dim,
                    "patch": self.patch, "frames_per_block": self.frames_per_block,
                    "freq_dim": self.freq_dim, "rope_theta": float(self.rope_theta),
                    "layers": list(self.layers),
                    "softmax_kv_window": self.softmax_kv_window,
                    "softmax_kv_sink": self.softmax_kv_sink},
            "text": {"dim": self.text_dim, "layers": self.text_layers, "heads": self.text_heads,
                     "intermediate": self.text_intermediate,
                     "max_positions": self.text_max_positions, "lowercase": self.text_lowercase},
            "sampler": {"sigmas": [float(s) for s in self.sigmas]},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

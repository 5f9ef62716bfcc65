"""Sampling loop, clean pass, memory state, snapshots and re-cache (docs/model-spec.md 5-6).

Mirrors core/include/strand/session.h: a Session runs over an immutable StrandModel; its
MemoryState is the whole "past" of the video and snapshots are deep copies.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List

import numpy as np
import torch

from .model import LayerMemory, StrandModel, to_rgb8
from .rng import noise
from .tokenizer import WordPieceTokenizer

MAX_PROMPT_BYTES = 4096


@dataclass
class MemoryState:
    layers: List[LayerMemory]
    next_block: int = 0
    seed: int = 0
    prompt: str = ""  # prompt active for the next block

    def clone(self) -> "MemoryState":
        return MemoryState([m.clone() for m in self.layers], int(self.next_block), int(self.seed),
                           str(self.prompt))

    def size_bytes(self) -> int:
        return sum(m.size_bytes() for m in self.layers)


@dataclass
class BlockResult:
    block_index: int
    latents: torch.Tensor        # clean x0 [F, C, h, w]
    frames: torch.Tensor         # decoded [F, 3, H, W], float, before 8-bit
    timings: Dict[str, float] = field(default_factory=dict)  # ms per stage

    def frames_rgb8(self) -> torch.Tensor:
        return to_rgb8(self.frames)


@dataclass
class _HistoryEntry:
    block_index: int
    pre_state: MemoryState   # memory before this block's clean pass
    latents: torch.Tensor    # the block's clean x0


def _f32(value: float) -> float:
    """The float32 value of a config number (the C++ engine stores sigmas as float)."""
    return float(np.float32(value))


class Session:
    """One generation run. `delta_impl` picks the hybrid layers' state update: "sequential" (the
    spec's reference, used for golden tensors) or "chunked" (WY form, same result up to rounding)."""

    def __init__(self, model: StrandModel, vocab: List[str], seed: int = 0,
                 recache_history: int = 8, delta_impl: str = "sequential"):
        self.model = model
        self.config = model.config
        self.tokenizer = WordPieceTokenizer(vocab, lowercase=self.config.text_lowercase,
                                            max_positions=self.config.text_max_positions)
        self.recache_history = max(0, int(recache_history))
        self.delta_impl = delta_impl
        self._state = MemoryState(model.empty_memory(), 0, int(seed) & 0xFFFFFFFFFFFFFFFF, "")
        self._history: Deque[_HistoryEntry] = deque()
        self._ctx_kv = None
        self.last_recache_ms = 0.0

    # ---- prompt ----
    @staticmethod
    def _check_prompt(text: str) -> str:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"prompt is not valid UTF-8: {exc}") from None
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise ValueError(f"prompt is not valid UTF-8: {exc}") from None
        if not text.strip():
            raise ValueError("prompt is empty")
        if size > MAX_PROMPT_BYTES:
            raise ValueError(f"prompt is {size} bytes, over {MAX_PROMPT_BYTES}")
        return text

    @torch.no_grad()
    def _encode_prompt(self, text: str):
        ctx = self.model.text_context(self.tokenizer.encode(text))
        return self.model.context_kv(ctx)

    @torch.no_grad()
    def set_prompt(self, text: str, recache_blocks: int = 0) -> None:
        """Prompt for the next block on. recache_blocks = k > 0 restores the memory from k blocks
        back (at most the kept history; the start of the video if fewer blocks exist) and replays
        those blocks' clean passes on their stored x0 under the new prompt."""
        text = self._check_prompt(text)
        ctx_kv = self._encode_prompt(text)
        start = time.perf_counter()
        k = min(int(recache_blocks), len(self._history))
        if k > 0:
            entries = list(self._history)[-k:]
            state = entries[0].pre_state.clone()
            for entry in entries:
                entry.pre_state = state.clone()  # later re-caches replay from the new history
                self._clean_pass(entry.latents, ctx_kv, state.layers, entry.block_index)
            state.next_block = self._state.next_block
            self._state = state
        self.last_recache_ms = (time.perf_counter() - start) * 1000.0
        self._state.prompt = text
        self._ctx_kv = ctx_kv

    @property
    def prompt(self) -> str:
        return self._state.prompt

    @property
    def next_block(self) -> int:
        return self._state.next_block

    # ---- generation ----
    def _clean_pass(self, x0: torch.Tensor, ctx_kv, layers: List[LayerMemory],
                    block_index: int) -> None:
        self.model.dit(x0, 0.0, ctx_kv, layers, block_index, update=True,
                       delta_impl=self.delta_impl)

    def _noise(self, block: int, step: int) -> torch.Tensor:
        z = noise(self._state.seed, block, step, self.config.latent_shape)
        return torch.from_numpy(z).to(self.model.device)

    @staticmethod
    def _sync(device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    @torch.no_grad()
    def generate_next_block(self) -> BlockResult:
        if self._ctx_kv is None:
            raise RuntimeError("set_prompt() must be called before generate_next_block()")
        model, cfg = self.model, self.config
        device = model.device
        n = self._state.next_block
        sigmas = [_f32(s) for s in cfg.sigmas]
        layers = self._state.layers
        t0 = time.perf_counter()
        x = self._noise(n, 0)
        x0 = x
        for i, sigma in enumerate(sigmas):
            v = model.dit(x, sigma, self._ctx_kv, layers, n, update=False,
                          delta_impl=self.delta_impl)
            x0 = x - sigma * v
            if i + 1 < len(sigmas):
                nxt = sigmas[i + 1]
                x = _f32(1.0 - nxt) * x0 + nxt * self._noise(n, i + 1)
        self._sync(device)
        t1 = time.perf_counter()
        frames = model.decode(x0)
        self._sync(device)
        t2 = time.perf_counter()
        pre_state = self._state.clone() if self.recache_history > 0 else None
        self._clean_pass(x0, self._ctx_kv, layers, n)
        self._sync(device)
        t3 = time.perf_counter()
        if pre_state is not None:
            self._history.append(_HistoryEntry(n, pre_state, x0.clone()))
            while len(self._history) > self.recache_history:
                self._history.popleft()
        self._state.next_block = n + 1
        timings = {"denoise_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3,
                   "clean_ms": (t3 - t2) * 1e3, "total_ms": (t3 - t0) * 1e3}
        return BlockResult(n, x0, frames, timings)

    # ---- snapshots ----
    def snapshot(self) -> MemoryState:
        return self._state.clone()

    def restore(self, state: MemoryState) -> None:
        """Continue from a snapshot: its prompt becomes active; re-cache history is cleared."""
        if len(state.layers) != len(self.config.layers):
            raise ValueError("snapshot does not match this model's layers")
        for mem, kind in zip(state.layers, self.config.layers):
            if mem.kind != kind:
                raise ValueError("snapshot does not match this model's layer kinds")
        self._state = state.clone()
        self._history.clear()
        self._ctx_kv = self._encode_prompt(state.prompt) if state.prompt else None

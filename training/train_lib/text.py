"""Frozen text encoder for training: prompt -> BERT hidden states, cached per prompt string.

The encoder is frozen (only the projection `text_embedding.*` and the DiT learn), so a prompt's
hidden states never change during a run and are computed once. The batch pads prompts of different
lengths; the DiT's cross-attention masks the padding, which gives exactly what the engine
computes on the unpadded prompt.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Sequence, Tuple

import torch

from strand_ref.tokenizer import WordPieceTokenizer


class TextBank:
    def __init__(self, encoder: torch.nn.Module, vocab: Sequence[str], lowercase: bool,
                 max_positions: int, device, max_cached: int = 50000):
        self.encoder = encoder
        self.tokenizer = WordPieceTokenizer(list(vocab), lowercase=lowercase,
                                            max_positions=max_positions)
        self.device = torch.device(device)
        self.max_cached = max_cached
        self._cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    @torch.no_grad()
    def hidden(self, prompt: str) -> torch.Tensor:
        """[L, dt] float32 on the device (cached)."""
        if prompt in self._cache:
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        ids = torch.as_tensor(self.tokenizer.encode(prompt), dtype=torch.long, device=self.device)
        with torch.autocast(device_type=self.device.type, enabled=False):
            h = self.encoder(ids).float()
        self._cache[prompt] = h
        if len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return h

    def batch(self, prompts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> (hidden [B, Lmax, dt] zero-padded, mask [B, Lmax] True on real tokens)."""
        hs: List[torch.Tensor] = [self.hidden(p) for p in prompts]
        length = max(h.shape[0] for h in hs)
        out = torch.zeros(len(hs), length, hs[0].shape[1], device=self.device)
        mask = torch.zeros(len(hs), length, dtype=torch.bool, device=self.device)
        for i, h in enumerate(hs):
            out[i, :h.shape[0]] = h
            mask[i, :h.shape[0]] = True
        return out, mask

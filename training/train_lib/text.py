"""Frozen text encoder for training: prompt -> BERT hidden states, cached per prompt string.

The encoder is frozen (only the projection `text_embedding.*` and the DiT learn), so a prompt's
hidden states never change during a run and are computed once. The batch pads prompts of different
lengths; the DiT's cross-attention masks the padding, which gives exactly what the engine
computes on the unpadded prompt.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch

from strand_ref.tokenizer import WordPieceTokenizer


class TextBank:
    def __init__(self, encoder: torch.nn.Module, vocab: Sequence[str], lowercase: bool,
                 max_positions: int, device, max_cached: int = 50000,
                 allowed_ids: Optional[frozenset] = None):
        self.encoder = encoder
        # A vocabulary-pruned encoder (training/prune_text_encoder.py) holds zero rows for the
        # ids it dropped: a prompt that needs one must fail, not train on a wrong embedding.
        self.allowed_ids = allowed_ids
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
        id_list = self.tokenizer.encode(prompt)
        if self.allowed_ids is not None:
            missing = sorted(set(id_list) - self.allowed_ids)
            if missing:
                raise ValueError(
                    f"prompt {prompt!r} needs token ids {missing[:8]} that the pruned text "
                    "encoder does not hold: train with the full encoder file, or add the "
                    "generator's new words to training/prune_text_encoder.py and re-prune")
        ids = torch.as_tensor(id_list, dtype=torch.long, device=self.device)
        with torch.autocast(device_type=self.device.type, enabled=False):
            h = self.encoder(ids).float()
        self._cache[prompt] = h
        if len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return h

    def batch(self, prompts: Sequence[str],
              length: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> (hidden [B, Lmax, dt] zero-padded, mask [B, Lmax] True on real tokens). `length`
        pads to that many tokens (the masked padding does not change the DiT's output)."""
        hs: List[torch.Tensor] = [self.hidden(p) for p in prompts]
        longest = max(h.shape[0] for h in hs)
        if length is not None and longest > length:
            raise ValueError(f"a prompt has {longest} tokens, more than the padding {length} "
                             f"(raise --text-pad): {prompts!r}")
        length = longest if length is None else length
        out = torch.zeros(len(hs), length, hs[0].shape[1], device=self.device)
        mask = torch.zeros(len(hs), length, dtype=torch.bool, device=self.device)
        for i, h in enumerate(hs):
            out[i, :h.shape[0]] = h
            mask[i, :h.shape[0]] = True
        return out, mask

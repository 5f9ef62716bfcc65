"""Deterministic random initialisation and the default vocabulary (for the bundled random model
and the golden test model).

Random numbers come from numpy's legacy RandomState, whose streams numpy guarantees to stay the
same across versions, so the exported files are byte-identical wherever they are regenerated.
"""
from __future__ import annotations

import math
from typing import List

import numpy as np
import torch

from .model import StrandModel

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Scene vocabulary, grouped for readability; order is part of the model (token id = index).
_WORDS = {
    "function": """a an the of over at in on with and through across under above below by from to
        into near along around between beyond behind toward towards while is are slowly quickly
        gently softly far distant close up down""",
    "landscape": """mountain mountains hill hills valley valleys river rivers lake lakes ocean sea
        beach coast shore cliff cliffs island islands canyon waterfall meadow field fields plain
        plains road path bridge village city town castle lighthouse harbor sky clouds cloud horizon
        sun moon stars star rocks rock sand dunes glacier volcano cave waves water trees tree
        flowers grass""",
    "time": """dawn sunrise morning noon midday afternoon sunset dusk evening twilight night
        midnight golden hour blue""",
    "biome": """forest forests jungle desert tundra savanna swamp marsh taiga arctic tropical
        alpine prairie steppe grassland rainforest reef snowy""",
    "weather": """rain rainy snow snowing fog foggy mist misty storm stormy thunder lightning wind
        windy sunny cloudy clear overcast haze hazy drizzle blizzard rainbow frost""",
    "camera": """camera pan panning tilt tilting zoom zooming dolly tracking shot aerial drone view
        orbit orbiting push pull static handheld wide angle closeup timelapse flying""",
    "subjects": """bird birds balloon balloons boat boats ship train car cars horse horses deer
        wolf wolves fish whale dolphins people person walking running swimming flying sailing
        drifting floating falling rising butterfly butterflies eagle flock herd kite leaves""",
    "colour": """red orange yellow green cyan purple violet pink white black gray grey brown gold
        silver dark bright pale warm cold vivid colorful""",
}


def default_vocab() -> List[str]:
    """[PAD] [UNK] [CLS] [SEP] [MASK], punctuation, digits, a-z, ##a-##z, a few suffixes, words."""
    tokens: List[str] = list(SPECIAL_TOKENS)
    tokens += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    tokens += [str(d) for d in range(10)]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += letters
    tokens += ["##" + c for c in letters]
    tokens += ["##" + str(d) for d in range(10)]
    tokens += ["##es", "##ing", "##ed", "##ly", "##er", "##est"]
    for group in _WORDS.values():
        for word in group.split():
            if word not in tokens:
                tokens.append(word)
    return tokens


def _inverse_softplus(y: np.ndarray) -> np.ndarray:
    return y + np.log(-np.expm1(-y))


@torch.no_grad()
def init_model(model: StrandModel, seed: int, head_std: float = 0.02,
               strong: bool = False) -> None:
    """Fills every parameter from RandomState(seed), in named_parameters() order:
    - Linear / Embedding weights N(0, 0.02^2) (head.head: head_std; patch_embedding:
      1 / sqrt(C p p) so the residual stream starts at unit scale), biases 0;
    - LayerNorm / RMSNorm weights 1, biases 0;
    - modulation randn / sqrt(d);
    - mem_A_log = log(U(1, 16)); mem_dt_bias such that softplus(mem_dt_bias) = dt is log-uniform
      in [1e-3, 1e-1] (as Mamba / Gated DeltaNet);
    - autoencoder convs He-normal (std sqrt(2 / fan_in)), the output convs sqrt(1 / fan_in), so
      decoded random latents have O(1) pixel values.
    strong=True (the golden test model) makes every path matter so parity tests can fail: Linear
    weights N(0, 1/fan_in), embeddings N(0, 1), biases N(0, 0.1^2), norm weights 1 + N(0, 0.1^2),
    norm biases N(0, 0.1^2).
    """
    rng = np.random.RandomState(seed)
    d = model.config.dim

    def normal(shape, std):
        return rng.standard_normal(size=shape).astype(np.float64) * std

    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "modulation":
            value = normal(shape, 1.0 / math.sqrt(d))
        elif leaf == "mem_A_log":
            value = np.log(rng.uniform(1.0, 16.0, size=shape))
        elif leaf == "mem_dt_bias":
            dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), size=shape))
            value = _inverse_softplus(dt)
        elif leaf == "bias":
            value = normal(shape, 0.1) if strong else np.zeros(shape)
        elif "LayerNorm" in name or "norm" in name.split(".")[-2]:
            # LayerNorm / RMSNorm / norm3 weights
            value = 1.0 + normal(shape, 0.1) if strong else np.ones(shape)
        elif p.dim() == 4:  # conv
            fan_in = shape[1] * shape[2] * shape[3]
            gain = 1.0 if name.endswith("conv_out.weight") else 2.0
            value = normal(shape, math.sqrt(gain / fan_in))
        elif "embeddings." in name:  # BERT embedding tables
            value = normal(shape, 1.0 if strong else 0.02)
        elif strong:
            value = normal(shape, 1.0 / math.sqrt(shape[1]))
        elif name == "head.head.weight":
            value = normal(shape, head_std)
        elif name == "patch_embedding.weight":
            value = normal(shape, 1.0 / math.sqrt(shape[1]))  # unit-variance tokens
        else:
            value = normal(shape, 0.02)
        p.copy_(torch.from_numpy(value.astype(np.float32)))

"""Training data: clips rendered by the procedural world with paraphrased prompts.

The world (training/world.py) renders a schedule in strand-cli's format; its vocabulary module
(training/world_vocab.py) parses prompts and writes paraphrases. This module samples attribute
combinations (never the held-out ones), writes a prompt per block with switches inside clips,
renders the clips and keeps a pool of them so that rendering does not starve the GPU.

When training/world.py is missing (it is written in parallel), `StandInWorld` renders flat
colour scenes with the same interface, so the pipeline and its tests run anyway; a warning says so.
"""
from __future__ import annotations

import hashlib
import random
import warnings
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

import world_vocab as vocab

# ---------------------------------------------------------------------------------------------
# Held-out prompt combinations (targets: adherence >= 0.9 on combinations never trained on)
# ---------------------------------------------------------------------------------------------

HELD_OUT_PERCENT = 10


def combo_key(attrs: Mapping[str, str]) -> str:
    keys = [a for a in vocab.AXIS_NAMES if not (a == "colour" and attrs.get("subject") == "none")]
    return ";".join(f"{a}={attrs[a]}" for a in keys)


def is_held_out(attrs: Mapping[str, str]) -> bool:
    """A fixed ~10% of the combinations (by a stable hash) that training never shows. The camera
    axis is left out of the hash so that a held-out scene stays held out whatever the camera does."""
    key = ";".join(f"{a}={attrs[a]}" for a in ("time", "biome", "weather", "subject")
                   ) + (f";colour={attrs['colour']}" if attrs.get("subject") != "none" else "")
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "little") % 100 < HELD_OUT_PERCENT


def held_out_combinations() -> List[Dict[str, str]]:
    return [c for c in vocab.all_combinations() if is_held_out(c)]


def random_attributes(rng: random.Random) -> Dict[str, str]:
    """A uniformly random training combination (rejection-samples the held-out ones)."""
    while True:
        attrs = {axis: rng.choice(values) for axis, values in vocab.AXES.items()}
        if attrs["subject"] == "none":
            attrs["colour"] = vocab.DEFAULTS["colour"]
        if not is_held_out(attrs):
            return attrs


def switched_attributes(rng: random.Random, attrs: Mapping[str, str]) -> Dict[str, str]:
    """attrs with one or two axes changed (what a director does mid-shot)."""
    for _ in range(100):
        new = dict(attrs)
        for axis in rng.sample(list(vocab.AXIS_NAMES), rng.choice((1, 1, 2))):
            new[axis] = rng.choice([v for v in vocab.AXES[axis] if v != attrs[axis]])
        if new["subject"] == "none":
            new["colour"] = vocab.DEFAULTS["colour"]
        if new != dict(attrs) and not is_held_out(new):
            return new
    return random_attributes(rng)


def prompt_for(rng: random.Random, attrs: Mapping[str, str]) -> str:
    """One paraphrase of attrs; now and then the canonical description, so both styles appear."""
    if rng.random() < 0.1:
        return vocab.describe(attrs)
    return vocab.paraphrases(attrs, 1, seed=rng.getrandbits(31))[0]


# ---------------------------------------------------------------------------------------------
# World access
# ---------------------------------------------------------------------------------------------


def load_world_class(allow_stand_in: bool = True):
    """training/world.py's World, or the stand-in (with a warning) when it is not there yet."""
    try:
        from world import World  # noqa: WPS433 (optional module written in parallel)
        return World
    except ImportError as exc:
        if not allow_stand_in:
            raise
        warnings.warn(f"training/world.py not importable ({exc}); using the flat-colour stand-in "
                      "world: fine for tests, useless for a real model")
        return StandInWorld


_TIME_SKY = {"dawn": (0.95, 0.6, 0.5), "day": (0.45, 0.7, 1.0), "dusk": (0.8, 0.35, 0.3),
             "night": (0.05, 0.07, 0.2)}
_BIOME_GROUND = {"forest": (0.1, 0.4, 0.15), "desert": (0.85, 0.7, 0.4),
                 "snow": (0.92, 0.94, 0.98), "city": (0.4, 0.4, 0.45), "coast": (0.1, 0.35, 0.7)}
_COLOUR = {"red": (0.9, 0.1, 0.1), "orange": (1.0, 0.55, 0.1), "yellow": (1.0, 0.9, 0.1),
           "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.3, 1.0), "purple": (0.6, 0.2, 0.8),
           "white": (1.0, 1.0, 1.0)}
_PAN = {"static": 0.0, "pan_left_slow": -1.0, "pan_left_fast": -4.0, "pan_right_slow": 1.0,
        "pan_right_fast": 4.0}


class StandInWorld:
    """Minimal stand-in with World's interface: sky colour = time, ground = biome, a ridge that
    scrolls with the camera, fog/rain as overlays, subjects as coloured squares."""

    def __init__(self, seed: int, width: int = 256, height: int = 144, fps: int = 12,
                 device="cpu"):
        self.seed, self.width, self.height, self.fps = int(seed), width, height, fps
        self.device = torch.device(device)

    def render_attributes(self, attrs_per_frame: Sequence[Mapping[str, str]]) -> torch.Tensor:
        h, w = self.height, self.width
        dev = self.device
        gen = torch.Generator().manual_seed(self.seed)
        phase = torch.rand(3, generator=gen) * 6.28
        ys = torch.linspace(0, 1, h, device=dev)[:, None]
        xs = torch.arange(w, device=dev, dtype=torch.float32)[None, :]
        frames = []
        offset = 0.0
        for i, attrs in enumerate(attrs_per_frame):
            offset += _PAN[attrs["camera"]] * w / 128.0
            sky = torch.tensor(_TIME_SKY[attrs["time"]], device=dev)[:, None, None]
            ground = torch.tensor(_BIOME_GROUND[attrs["biome"]], device=dev)[:, None, None]
            x = xs + offset
            ridge = 0.55 + 0.08 * torch.sin(x / w * 6.28 * 2 + float(phase[0])) \
                + 0.04 * torch.sin(x / w * 6.28 * 5 + float(phase[1]))
            is_ground = (ys > ridge).float()[None]
            img = sky * (1 - is_ground) * (1.2 - 0.4 * ys[None]) + ground * is_ground
            if attrs["weather"] == "fog":
                img = 0.5 * img + 0.5 * 0.75
            elif attrs["weather"] in ("rain", "snow"):
                g = torch.Generator().manual_seed(self.seed * 7919 + i)
                drops = (torch.rand(h, w, generator=g) < 0.02).float().to(dev)[None]
                tint = 0.6 if attrs["weather"] == "rain" else 1.0
                img = img * (1 - drops) + tint * drops
            if attrs["subject"] != "none":
                col = torch.tensor(_COLOUR[attrs["colour"]], device=dev)[:, None, None]
                size = max(2, h // 12)
                for j in range(3):
                    cx = int((w * (0.2 + 0.3 * j) + i * (2 + j)) % w)
                    cy = int(h * (0.2 + 0.1 * j)) if attrs["subject"] != "cars" else int(h * 0.85)
                    img[:, cy:cy + size, cx:cx + size] = col
            frames.append(img.clamp(0, 1))
        return (torch.stack(frames) * 255).round().to(torch.uint8)

    def render_schedule(self, schedule, frames: int):
        parsed = vocab.parse_schedule(schedule)
        per_frame = []
        j = 0
        for f in range(frames):
            while j + 1 < len(parsed) and parsed[j + 1][0] <= f:
                j += 1
            per_frame.append(parsed[j][1])
        return self.render_attributes(per_frame), per_frame

    def render_schedule_with_subject_mask(self, schedule, frames: int):
        video, per_frame = self.render_schedule(schedule, frames)
        without = self.render_attributes([dict(a, subject="none") for a in per_frame])
        mask = (video.to(torch.int16) - without.to(torch.int16)).abs().sum(dim=1) > 12
        return video, mask, per_frame


# ---------------------------------------------------------------------------------------------
# Clips
# ---------------------------------------------------------------------------------------------


@dataclass
class Clip:
    frames: torch.Tensor           # uint8 [blocks * F, 3, H, W]
    prompts: List[str]             # one per block (the prompt active at the block's first frame)
    latents: Optional[torch.Tensor] = None  # [blocks, F, C, h, w], filled by the DiT stages
    text: Optional[Tuple[torch.Tensor, torch.Tensor]] = None  # (hidden [blocks, L, dt], mask)
    subject_mask: Optional[torch.Tensor] = None  # bool [blocks * F, H, W]: the subjects' pixels
    weights: Optional[torch.Tensor] = None  # [blocks, F, 1, h, w] loss weight per latent cell


class ClipSource:
    """Renders clips of `blocks` blocks of `frames_per_block` frames with prompt switches at block
    boundaries (strand-cli applies a prompt from the block containing its frame)."""

    def __init__(self, world_cls, width: int, height: int, fps: int, frames_per_block: int,
                 device, seed: int, switch_prob: float = 0.5, skip_frames_max: int = 0,
                 subject_masks: bool = False):
        self.world_cls = world_cls
        self.width, self.height, self.fps = width, height, fps
        self.frames_per_block = frames_per_block
        self.device = device
        self.rng = random.Random(seed)
        self.switch_prob = switch_prob
        self.skip_frames_max = skip_frames_max
        # Render where the subjects are too (a second world render of clips with subjects), for
        # the subject-weighted losses; a world without that method gives clips without masks.
        self.subject_masks = subject_masks

    def schedule(self, blocks: int) -> Tuple[List[dict], List[str]]:
        rng = self.rng
        attrs = random_attributes(rng)
        prompt = prompt_for(rng, attrs)
        schedule = [{"frame": 0, "prompt": prompt}]
        prompts = [prompt] * blocks
        if blocks > 1 and rng.random() < self.switch_prob:
            # one or two switches, each at a block boundary
            for at in sorted(rng.sample(range(1, blocks), min(blocks - 1, rng.choice((1, 1, 2))))):
                attrs = switched_attributes(rng, attrs)
                prompt = prompt_for(rng, attrs)
                schedule.append({"frame": at * self.frames_per_block, "prompt": prompt})
                prompts[at:] = [prompt] * (blocks - at)
        return schedule, prompts

    def clip(self, blocks: int) -> Clip:
        schedule, prompts = self.schedule(blocks)
        skip_blocks = self.rng.randint(0, self.skip_frames_max // self.frames_per_block) \
            if self.skip_frames_max else 0
        skip = skip_blocks * self.frames_per_block
        if skip:
            # Start mid-video: the first prompt holds during the skipped part.
            schedule = [schedule[0]] + [dict(e, frame=e["frame"] + skip) for e in schedule[1:]]
        world = self.world_cls(self.rng.getrandbits(31), width=self.width, height=self.height,
                               fps=self.fps, device=self.device)
        total = skip + blocks * self.frames_per_block
        mask = None
        if self.subject_masks and hasattr(world, "render_schedule_with_subject_mask"):
            frames, mask, _labels = world.render_schedule_with_subject_mask(schedule, total)
            mask = torch.as_tensor(mask)[skip:].to(self.device)
        else:
            frames, _labels = world.render_schedule(schedule, total)
        frames = torch.as_tensor(frames)[skip:]
        return Clip(frames.to(self.device), prompts, subject_mask=mask)


class ClipPool:
    """A pool of rendered clips; each draw replaces `refresh` of them with fresh renders, so the
    data keeps changing while rendering costs a fraction of a training step."""

    def __init__(self, source: ClipSource, blocks: int, size: int, refresh: int,
                 prepare=None, seed: int = 0):
        self.source, self.blocks = source, blocks
        self.size, self.refresh = max(1, size), max(1, refresh)
        self.prepare = prepare or (lambda clip: clip)
        self.rng = random.Random(seed)
        self.clips: List[Clip] = []

    def _fresh(self) -> Clip:
        return self.prepare(self.source.clip(self.blocks))

    def draw(self, count: int) -> List[Clip]:
        while len(self.clips) < self.size:
            self.clips.append(self._fresh())
        for _ in range(min(self.refresh, self.size)):
            self.clips[self.rng.randrange(self.size)] = self._fresh()
        return [self.clips[self.rng.randrange(self.size)] for _ in range(count)]


def latent_weight_map(mask: torch.Tensor, latent_hw: Tuple[int, int], subject_weight: float,
                      ring: bool = True) -> torch.Tensor:
    """Loss weights per latent cell from a subject pixel mask.

    mask: bool [T, H, W] (the subjects' pixels); latent_hw: (h, w) of the latent, H / h = W / w
    is the autoencoder's stride. Returns float [T, h, w]: `subject_weight` on every cell that
    holds a subject pixel, 1 elsewhere; with `ring`, the cells around those (the 8 neighbours,
    which the encoder's receptive field and the DiT's 2x2 patches tie to the subject) get the
    mean of the two. Subjects are a few cells out of 576 per frame: without the weight the
    flow-matching loss barely notices whether they are drawn (docs/model-card.md, "What next")."""
    t, height, width = mask.shape
    h, w = latent_hw
    if height % h or width % w or height // h != width // w:
        raise ValueError(f"mask {height}x{width} is not a whole multiple of the latent {h}x{w}")
    stride = height // h
    cells = torch.nn.functional.max_pool2d(mask.float().unsqueeze(1), stride)   # [T, 1, h, w]
    weights = 1.0 + (subject_weight - 1.0) * cells
    if ring and subject_weight != 1.0:
        near = torch.nn.functional.max_pool2d(cells, 3, stride=1, padding=1)
        weights = torch.maximum(weights, 1.0 + 0.5 * (subject_weight - 1.0) * near)
    return weights[:, 0]


def pixel_weight_map(mask: torch.Tensor, subject_weight: float, grow: int = 2) -> torch.Tensor:
    """Loss weights per pixel for the decoder: `subject_weight` on the subjects' pixels and
    `grow` pixels around them (their edges against the sky or road), 1 elsewhere.
    mask bool [N, H, W] -> float [N, 1, H, W]."""
    m = mask.float().unsqueeze(1)
    if grow > 0:
        m = torch.nn.functional.max_pool2d(m, 2 * grow + 1, stride=1, padding=grow)
    return 1.0 + (subject_weight - 1.0) * m


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float in [-1, 1] (the autoencoder's pixel range)."""
    return frames.float() / 127.5 - 1.0


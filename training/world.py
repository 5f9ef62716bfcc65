#!/usr/bin/env python3
"""A seeded, infinite procedural world whose truth is known: the training data and the yardstick.

Scenes are landscapes described by the attribute axes of world_vocab.py (time of day, biome,
weather, camera motion, subject and its colour). Everything is a closed-form function of
(seed, world x, screen y, time), evaluated for a batch of frames at once with tensor ops, so the
same code renders on the CPU and on a GPU (``device=``) and panning back to a world position
shows the same mountains, trees and buildings.

Geometry lives on a reference canvas of 256 x 144 units whatever the output size, so a 512 x 288
render shows the same scene at twice the detail. The camera position ``camera_x`` is in those
units; layers move with parallax (far mountains 0.3, scenery and ground 1.0).

Attribute changes never jump: each axis is a weight vector over its values that moves to the new
value over TRANSITION_S seconds (smoothstep), and every visual parameter (sky colours, sun
position, fog amount, camera speed, subject opacity, colour) is blended from those weights.

Public API (other modules code against it):
    World(seed, width=256, height=144, fps=12, device="cpu")
    World.render_schedule(schedule, frames) -> (uint8 [frames, 3, H, W], labels)
    World.render_attributes(attrs_per_frame) -> uint8 [frames, 3, H, W]

CLI:
    world.py render --schedule S.json --frames N --seed S --out DIR [--width W --height H]
    world.py strip --out DIR [--seed S]       the example strips of docs/world.md
    world.py bench [--frames N --device D]    frames per second
"""

from __future__ import annotations

import argparse
import json
import sys
import time as time_module
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from world_vocab import AXES, DEFAULTS, parse_schedule  # noqa: E402

REF_W, REF_H = 256.0, 144.0     # reference canvas (units)
HORIZON_Y = 92.0                # sky above, land below
ROAD_TOP, ROAD_BOTTOM = 124.0, 138.0
SEA_SHORE_Y = 108.0             # coast: sea between the horizon and the shore
# Layout contract the evaluator relies on: birds and balloons fly in the band above SKY_ZONE_Y,
# where only sky, sun, moon, stars, weather and rare mountain peaks appear (trees and buildings
# stay below 54, mountains below ~40); car bodies fill the road between ROAD_TOP and ROAD_BOTTOM.
SKY_ZONE_Y = 40.0
TRANSITION_S = 1.5              # attribute changes blend over this long
# render_schedule_with_subject_mask: a pixel belongs to a subject when the subject changes its
# colour by more than this (sum over R, G, B in 0-255): anti-aliased edges count, uint8 rounding
# does not.
SUBJECT_MASK_MIN_DIFF = 12
MOUNTAIN_PARALLAX = 0.3
CAMERA_SPEED_UNITS_PER_S = {"static": 0.0, "pan_left_slow": -24.0, "pan_left_fast": -84.0,
                            "pan_right_slow": 24.0, "pan_right_fast": 84.0}
RENDER_BATCH_CPU = 32           # frames per tensor batch (bounds memory at large sizes);
RENDER_BATCH_GPU = 512          # GPUs need big batches to hide kernel launch overhead

# --- palettes --------------------------------------------------------------------------------
# Per time of day: sky gradient, sun or moon, stars, light on the land, lit windows/headlights.
TIME_PARAMS: Dict[str, Dict[str, Sequence[float]]] = {
    "dawn": dict(sky_top=(0.33, 0.42, 0.72), sky_horizon=(1.00, 0.70, 0.55),
                 sun_xy=(64.0, 74.0), sun_rgb=(1.00, 0.86, 0.62), sun_alpha=(1.0,),
                 moon_alpha=(0.0,), star_alpha=(0.15,), tint=(0.95, 0.80, 0.76),
                 lights=(0.2,)),
    "day": dict(sky_top=(0.22, 0.48, 0.90), sky_horizon=(0.72, 0.86, 0.98),
                sun_xy=(196.0, 26.0), sun_rgb=(1.00, 0.98, 0.88), sun_alpha=(1.0,),
                moon_alpha=(0.0,), star_alpha=(0.0,), tint=(1.00, 1.00, 1.00), lights=(0.0,)),
    "dusk": dict(sky_top=(0.20, 0.13, 0.38), sky_horizon=(1.00, 0.48, 0.20),
                 sun_xy=(188.0, 78.0), sun_rgb=(1.00, 0.50, 0.22), sun_alpha=(1.0,),
                 moon_alpha=(0.0,), star_alpha=(0.25,), tint=(0.92, 0.62, 0.50),
                 lights=(0.6,)),
    "night": dict(sky_top=(0.01, 0.02, 0.08), sky_horizon=(0.07, 0.11, 0.24),
                  sun_xy=(200.0, 30.0), sun_rgb=(0.92, 0.93, 1.00), sun_alpha=(0.0,),
                  moon_alpha=(1.0,), star_alpha=(1.0,), tint=(0.30, 0.35, 0.55), lights=(1.0,)),
}
SUBJECT_RGB = {"red": (0.90, 0.12, 0.12), "orange": (1.00, 0.50, 0.05),
               "yellow": (1.00, 0.88, 0.10), "green": (0.15, 0.80, 0.20),
               "blue": (0.15, 0.35, 1.00), "purple": (0.60, 0.15, 0.85),
               "white": (0.97, 0.97, 0.97)}
OVERCAST_RGB = (0.55, 0.57, 0.60)   # rain and snow skies fade toward this (times the light)
FOG_RGB = (0.78, 0.80, 0.82)

AttrValue = Union[str, Mapping[str, float]]


# --- hashing and noise -----------------------------------------------------------------------
def _hash(seed: int, salt: int, *coords: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) from integer coordinates: a 32-bit integer mix kept in int64 (no overflow)."""
    h = torch.full_like(coords[0], (seed * 0x9E3779B1 + salt * 0x85EBCA77) & 0xFFFFFFFF)
    for c in coords:
        h = ((h ^ (c & 0xFFFFFFFF)) * 0x01000193) & 0xFFFFFFFF
        h = h ^ (h >> 15)
        h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
        h = h ^ (h >> 12)
        h = (h * 0x297A2D39) & 0xFFFFFFFF
        h = h ^ (h >> 15)
    return (h & 0xFFFFFF).to(torch.float32) / 16777216.0


def _noise1(seed: int, salt: int, x: torch.Tensor) -> torch.Tensor:
    """Smooth 1-D value noise in [0, 1) with unit lattice spacing."""
    cell = torch.floor(x)
    f = x - cell
    f = f * f * (3.0 - 2.0 * f)
    i = cell.to(torch.int64)
    return _hash(seed, salt, i) * (1.0 - f) + _hash(seed, salt, i + 1) * f


def _fbm1(seed: int, salt: int, x: torch.Tensor, octaves: int = 4) -> torch.Tensor:
    total, amp, norm = torch.zeros_like(x), 1.0, 0.0
    for o in range(octaves):
        total = total + amp * _noise1(seed, salt + o, x * (2.0 ** o))
        norm += amp
        amp *= 0.5
    return total / norm


def _smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _over(dst: torch.Tensor, rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Alpha-composite rgb [B,3,H,W] (or broadcastable) over dst with alpha [B,H,W]."""
    a = alpha.unsqueeze(1)
    return dst * (1.0 - a) + rgb * a


def _rgb(values: Sequence[float], device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, 3, 1, 1)


# --- per-frame state -------------------------------------------------------------------------
def _weights_for(axis: str, value: AttrValue) -> List[float]:
    """A value name or a {value: weight} mapping -> a normalised weight vector over the axis."""
    names = AXES[axis]
    if isinstance(value, str):
        if value not in names:
            raise ValueError(f"unknown {axis} value {value!r}; expected one of {names}")
        return [1.0 if n == value else 0.0 for n in names]
    weights = [float(value.get(n, 0.0)) for n in names]
    unknown = set(value) - set(names)
    if unknown or sum(weights) <= 0:
        raise ValueError(f"bad {axis} weights {dict(value)!r}")
    total = sum(weights)
    return [w / total for w in weights]


def _smooth_weights(targets: List[List[float]], switch_frames: int) -> List[List[float]]:
    """Per-frame one-hot targets -> weights that glide to each new target over switch_frames."""
    out: List[List[float]] = []
    start = targets[0]
    since = switch_frames
    for i, target in enumerate(targets):
        if i > 0 and target != targets[i - 1]:
            start, since = out[-1], 0
        since += 1
        p = min(1.0, since / switch_frames)
        p = p * p * (3.0 - 2.0 * p)
        out.append([s + (t - s) * p for s, t in zip(start, target)])
    return out


class World:
    """A seeded procedural world. Rendering is deterministic in (seed, size, attributes, frame
    index, camera_x) on a given device; different seeds give different places."""

    def __init__(self, seed: int, width: int = 256, height: int = 144, fps: int = 12,
                 device: Union[str, torch.device] = "cpu"):
        if width < 8 or height < 8:
            raise ValueError("world frames must be at least 8 x 8")
        self.seed = int(seed) & 0x7FFFFFFF
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.device = torch.device(device)
        self.transition_frames = max(1, round(TRANSITION_S * self.fps))
        # Pixel centres on the reference canvas.
        self._x = ((torch.arange(self.width, dtype=torch.float32, device=self.device) + 0.5)
                   * (REF_W / self.width)).view(1, 1, -1)
        self._y = ((torch.arange(self.height, dtype=torch.float32, device=self.device) + 0.5)
                   * (REF_H / self.height)).view(1, -1, 1)
        self._px = REF_W / self.width    # one output pixel in units (for anti-aliasing)
        per_frame = self.width * self.height / (256 * 144)
        batch = RENDER_BATCH_CPU if self.device.type == "cpu" else RENDER_BATCH_GPU
        self.render_batch = max(1, int(batch / max(1.0, per_frame)))

    # ---- public API ----
    def render_schedule(self, schedule: Sequence[Mapping[str, object]], frames: int
                        ) -> Tuple[torch.Tensor, List[Dict[str, object]]]:
        """Frames for a strand-cli schedule ([{"frame": F, "prompt": "..."}], parsed with
        world_vocab.parse_schedule) and per-frame labels: each axis' value of the prompt active
        at that frame, "camera_x" (world units) and "transition" (True for the TRANSITION_S
        window starting at a frame where some axis changed). Frames before the first entry use
        the first entry's prompt."""
        state, labels = self._schedule_state(schedule, frames)
        return self._render_state(state), labels

    def render_schedule_with_subject_mask(self, schedule: Sequence[Mapping[str, object]],
                                          frames: int
                                          ) -> Tuple[torch.Tensor, torch.Tensor,
                                                     List[Dict[str, object]]]:
        """render_schedule plus where the subjects are: a bool [frames, H, W] mask of the pixels
        that the subjects change (the same state rendered again with the subject axis forced to
        "none"; everything else is a function of the same seed and clock, so only the subjects'
        own pixels, and the rain or snow drawn over them, differ). Training weights its loss with
        it (train_lib.data.latent_weight_map). Costs a second render when a subject is shown."""
        state, labels = self._schedule_state(schedule, frames)
        video = self._render_state(state)
        mask = torch.zeros((frames, self.height, self.width), dtype=torch.bool, device=self.device)
        none = AXES["subject"].index("none")
        if bool((state["w_subject"][:, none] < 1.0).any()):
            bare_state = dict(state)
            bare = torch.zeros_like(state["w_subject"])
            bare[:, none] = 1.0
            bare_state["w_subject"] = bare
            without = self._render_state(bare_state)
            diff = (video.to(torch.int16) - without.to(torch.int16)).abs().sum(dim=1)
            mask = diff > SUBJECT_MASK_MIN_DIFF
        return video, mask, labels

    def _schedule_state(self, schedule: Sequence[Mapping[str, object]], frames: int
                        ) -> Tuple[Dict[str, torch.Tensor], List[Dict[str, object]]]:
        if frames <= 0:
            raise ValueError("frames must be positive")
        parsed = parse_schedule(schedule)
        if not parsed:
            raise ValueError("empty schedule")
        active: List[Dict[str, str]] = []
        entry = 0
        for i in range(frames):
            while entry + 1 < len(parsed) and parsed[entry + 1][0] <= i:
                entry += 1
            active.append(parsed[entry][1])
        state = self._state_from_targets(active, smooth=True)
        labels: List[Dict[str, object]] = []
        last_change = -10 ** 9
        for i in range(frames):
            if i > 0 and active[i] != active[i - 1]:
                last_change = i
            label: Dict[str, object] = dict(active[i])
            label["camera_x"] = float(state["camera_x"][i])
            label["transition"] = i - last_change < self.transition_frames
            labels.append(label)
        return state, labels

    def render_attributes(self, attrs_per_frame: Sequence[Mapping[str, object]]) -> torch.Tensor:
        """Frames for explicit per-frame attributes, without transition smoothing (for training).

        Each dict may give any axis as a value name or as {value: weight} (a blend); missing
        axes take the defaults. Optional keys: "camera_x" (else integrated from the camera
        speed, starting at the previous frame's position or 0) and "frame" (the animation clock,
        else the list index)."""
        if not attrs_per_frame:
            raise ValueError("no frames")
        state = self._state_from_targets(list(attrs_per_frame), smooth=False)
        return self._render_state(state)

    def camera_speed_per_frame(self, camera: str) -> float:
        return CAMERA_SPEED_UNITS_PER_S[camera] / self.fps

    # ---- state ----
    def _state_from_targets(self, frames_attrs: List[Mapping[str, object]], smooth: bool
                            ) -> Dict[str, torch.Tensor]:
        n = len(frames_attrs)
        weights: Dict[str, torch.Tensor] = {}
        for axis in AXES:
            targets = [_weights_for(axis, a.get(axis, DEFAULTS[axis]))  # type: ignore[arg-type]
                       for a in frames_attrs]
            if smooth:
                targets = _smooth_weights(targets, self.transition_frames)
            weights[axis] = torch.tensor(targets, dtype=torch.float64)
        speeds = torch.tensor([CAMERA_SPEED_UNITS_PER_S[c] / self.fps for c in AXES["camera"]],
                              dtype=torch.float64)
        velocity = weights["camera"] @ speeds
        camera_x = torch.zeros(n, dtype=torch.float64)
        clock = torch.zeros(n, dtype=torch.float64)
        position = 0.0
        for i, a in enumerate(frames_attrs):
            if i > 0:
                position += float(velocity[i])
            if "camera_x" in a:
                position = float(a["camera_x"])  # type: ignore[arg-type]
            camera_x[i] = position
            clock[i] = float(a.get("frame", i))  # type: ignore[arg-type]
        state = {f"w_{axis}": w for axis, w in weights.items()}
        state["camera_x"] = camera_x
        state["t"] = clock / self.fps
        return state

    def _render_state(self, state: Dict[str, torch.Tensor]) -> torch.Tensor:
        n = state["camera_x"].shape[0]
        out = torch.empty((n, 3, self.height, self.width), dtype=torch.uint8, device=self.device)
        for start in range(0, n, self.render_batch):
            sl = slice(start, min(n, start + self.render_batch))
            batch = {k: v[sl].to(self.device, torch.float32) for k, v in state.items()}
            rgb = self._render_batch(batch)
            out[sl] = (rgb.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
        return out

    # ---- rendering ----
    def _render_batch(self, s: Dict[str, torch.Tensor]) -> torch.Tensor:
        dev = self.device
        b = s["camera_x"].shape[0]
        cam = s["camera_x"].view(b, 1, 1)
        t = s["t"].view(b, 1, 1)
        tp = {}
        for key in TIME_PARAMS["day"]:
            table = torch.tensor([TIME_PARAMS[v][key] for v in AXES["time"]],
                                 dtype=torch.float32, device=dev)
            tp[key] = s["w_time"] @ table                     # [B, k]
        tint = tp["tint"].view(b, 3, 1, 1)
        weather = s["w_weather"]                               # clear, rain, snow, fog
        rain = weather[:, 1].view(b, 1, 1)
        snowfall = weather[:, 2].view(b, 1, 1)
        fog = weather[:, 3].view(b, 1, 1)
        overcast = (rain * 0.75 + snowfall * 0.55)

        sky = self._sky(tp, b, cam, t, overcast)
        frame = torch.zeros((b, 3, self.height, self.width), device=dev)
        depth = torch.zeros((b, self.height, self.width), device=dev)
        for index, biome in enumerate(AXES["biome"]):
            w = s["w_biome"][:, index]
            if not bool((w > 0).any()):
                continue
            rgb, dep = getattr(self, f"_land_{biome}")(sky, cam, t, tp, tint)
            frame = frame + rgb * w.view(b, 1, 1, 1)
            depth = depth + dep * w.view(b, 1, 1)
        # Wet and snowy land is darker / paler.
        frame = frame * (1.0 - 0.22 * rain.unsqueeze(1))
        # Fog: more with distance; its colour follows the light. Subjects are near the camera
        # and drawn after it, only lightly hazed.
        fog_rgb = (_rgb(FOG_RGB, dev) * (0.35 + 0.65 * tint)
                   + 0.25 * tp["sky_horizon"].view(b, 3, 1, 1)) / 1.25
        frame = _over(frame, fog_rgb, (fog * (0.25 + 0.7 * depth)).clamp(0, 0.93))
        frame = self._subjects(frame, s, b, cam, t, tint, tp, fog_rgb, fog)
        if bool((rain > 0).any()):
            frame = self._rain(frame, b, t, rain, tint)
        if bool((snowfall > 0).any()):
            frame = self._snowfall(frame, b, cam, t, snowfall, tint)
        return frame

    def _sky(self, tp, b, cam, t, overcast) -> torch.Tensor:
        dev = self.device
        x, y = self._x, self._y
        g = (y / HORIZON_Y).clamp(0.0, 1.0) ** 0.85            # [1,H,1]
        top = tp["sky_top"].view(b, 3, 1, 1)
        hor = tp["sky_horizon"].view(b, 3, 1, 1)
        sky = top * (1.0 - g.unsqueeze(1)) + hor * g.unsqueeze(1)
        # Stars: a sparse pixel-grid sprinkle, drifting slightly with the camera, twinkling.
        sx = torch.floor(x * (self.width / REF_W) + cam * 0.05 * (self.width / REF_W))
        sy = torch.floor(y * (self.height / REF_H))
        cell = _hash(self.seed, 11, sx.to(torch.int64), sy.to(torch.int64))
        twinkle = 0.6 + 0.4 * torch.sin(t * 3.0 + cell * 60.0)
        stars = (cell > 0.992).float() * twinkle * (1.0 - g) ** 0.5
        star_alpha = tp["star_alpha"].view(b, 1, 1) * (1.0 - overcast)
        sky = sky + (stars * star_alpha).unsqueeze(1) * 0.9
        # Sun: disk plus a wide glow; the moon: a crescent with a faint halo.
        sun_x = tp["sun_xy"][:, 0].view(b, 1, 1)
        sun_y = tp["sun_xy"][:, 1].view(b, 1, 1)
        d = torch.sqrt((x - sun_x) ** 2 + (y - sun_y) ** 2)
        sun_rgb = tp["sun_rgb"].view(b, 3, 1, 1)
        clear = 1.0 - overcast
        sun_a = tp["sun_alpha"].view(b, 1, 1) * clear
        glow = torch.exp(-(d / 38.0) ** 2) * 0.45 * sun_a
        sky = sky + sun_rgb * glow.unsqueeze(1)
        disk = 1.0 - _smoothstep(9.0 - self._px, 9.0 + self._px, d)
        sky = _over(sky, sun_rgb, disk * sun_a)
        moon_a = tp["moon_alpha"].view(b, 1, 1) * clear
        inner = torch.sqrt((x - sun_x - 3.5) ** 2 + (y - sun_y + 2.0) ** 2)
        crescent = (1.0 - _smoothstep(7.0 - self._px, 7.0 + self._px, d)) * \
            _smoothstep(6.0 - self._px, 6.0 + self._px, inner)
        sky = sky + sun_rgb * (torch.exp(-(d / 20.0) ** 2) * 0.12 * moon_a).unsqueeze(1)
        sky = _over(sky, sun_rgb, crescent * moon_a)
        # Rain and snow skies fade toward an overcast grey lit by the time of day.
        lum = (0.3 + 0.7 * tp["tint"].mean(dim=1)).view(b, 1, 1, 1)
        sky = _over(sky, _rgb(OVERCAST_RGB, dev) * lum, overcast * 0.7)
        return sky

    def _mountains(self, sky, cam, tint, salt: int, base_rgb, cap_rgb, cap_level: float,
                   height: float, mesa: bool = False):
        """Far ridge (parallax 0.3), tinted toward the sky's horizon colour by distance."""
        x, y = self._x, self._y
        wx = (x + cam * MOUNTAIN_PARALLAX) / 70.0
        ridge = _fbm1(self.seed, salt, wx, octaves=5)
        if mesa:
            ridge = torch.minimum(ridge, torch.full_like(ridge, 0.55)) * 1.3
        top = HORIZON_Y - 6.0 - height * ridge                 # [B,1,W]
        cover = _smoothstep(-self._px, self._px, y - top)      # [B,H,W]
        shade = 0.85 + 0.15 * _fbm1(self.seed, salt + 7, wx * 8.0, octaves=2)
        rgb = base_rgb * shade.unsqueeze(1)
        if cap_rgb is not None:
            cap = (1.0 - _smoothstep(0.0, 3.0, y - (top + cap_level * (HORIZON_Y - top)))) * \
                (top < HORIZON_Y - 18.0).float()
            rgb = rgb * (1.0 - cap.unsqueeze(1)) + cap_rgb * cap.unsqueeze(1)
        rgb = rgb * (0.45 + 0.55 * tint)
        haze = sky[:, :, int(self.height * HORIZON_Y / REF_H) - 1].unsqueeze(2)
        rgb = rgb * 0.6 + haze * 0.4
        return rgb, cover

    def _ground(self, cam, salt, rgb_a, rgb_b, scale=3.0):
        """Ground texture anchored to world x: two colours mixed by blocky noise."""
        x, y = self._x, self._y
        wx = x + cam
        n = _hash(self.seed, salt, torch.floor(wx / scale).to(torch.int64),
                  torch.floor(y / 2.0).to(torch.int64))
        stripes = 0.5 + 0.5 * torch.sin(y / 3.0 + _fbm1(self.seed, salt + 1, wx / 40.0) * 6.0)
        mix = (0.6 * n + 0.4 * stripes).unsqueeze(1)
        return rgb_a * (1.0 - mix) + rgb_b * mix

    def _road(self, frame, depth, cam, tint, tp, asphalt, line_rgb):
        x, y = self._x, self._y
        b = frame.shape[0]
        wx = x + cam
        road = (_smoothstep(ROAD_TOP - self._px, ROAD_TOP + self._px, y)
                * (1.0 - _smoothstep(ROAD_BOTTOM - self._px, ROAD_BOTTOM + self._px, y)))
        road = road.expand(b, self.height, self.width)
        mid = (ROAD_TOP + ROAD_BOTTOM) / 2.0
        dash = ((torch.remainder(wx, 16.0) < 8.0).float()
                * (1.0 - _smoothstep(0.4, 0.4 + self._px, (y - mid).abs())))
        rgb = asphalt * (1.0 - dash.unsqueeze(1)) + line_rgb * dash.unsqueeze(1)
        frame = _over(frame, rgb * tint, road)
        return frame, depth

    def _pine_trees(self, frame, depth, cam, tint, salt, green, snowy: bool):
        """Pines in 16-unit cells of world x; each pixel looks at its own and both neighbours'
        trees and keeps the nearest (largest base y) that covers it."""
        x, y = self._x, self._y
        b = frame.shape[0]
        wx = x + cam                                           # [B,1,W]
        cell = torch.floor(wx / 16.0).to(torch.int64)
        best_base = torch.full((b, self.height, self.width), -1.0, device=self.device)
        best_rgb = torch.zeros_like(frame)
        for offset in (-1, 0, 1):
            k = cell + offset
            present = _hash(self.seed, salt, k) < 0.85
            cx = (k.to(torch.float32) + 0.3 + 0.4 * _hash(self.seed, salt + 1, k)) * 16.0
            height = 20.0 + 26.0 * _hash(self.seed, salt + 2, k)
            half = height * (0.24 + 0.08 * _hash(self.seed, salt + 3, k))
            base = 100.0 + 14.0 * _hash(self.seed, salt + 4, k)
            top = base - height
            frac = ((y - top) / height)                        # 0 at the tip, 1 at the base
            tier = torch.remainder(frac * 3.0, 1.0)
            width = half * (0.25 + 0.75 * frac) * (0.55 + 0.45 * tier)
            dx = (wx - cx).abs()
            crown = ((dx < width) & (frac >= 0) & (frac <= 1)).float()
            trunk = ((dx < 1.3) & (y >= base - 2) & (y < base + 4)).float()
            cover = torch.maximum(crown, trunk) * present.float()
            shade = (0.75 + 0.25 * _hash(self.seed, salt + 5, k)).unsqueeze(1)
            side = 1.0 - 0.18 * ((wx - cx) > 0).float().unsqueeze(1)   # light from the left
            rgb = green * shade * side
            if snowy:
                snow = ((tier < 0.35) & (frac > 0.05)).float().unsqueeze(1) * crown.unsqueeze(1)
                rgb = rgb * (1 - snow) + torch.tensor([0.92, 0.95, 1.0], device=self.device
                                                      ).view(1, 3, 1, 1) * snow
            trunk_rgb = torch.tensor([0.30, 0.20, 0.12], device=self.device).view(1, 3, 1, 1)
            rgb = rgb * (1 - trunk.unsqueeze(1) * (1 - crown.unsqueeze(1))) + \
                trunk_rgb * (trunk * (1 - crown)).unsqueeze(1)
            nearer = (cover > 0) & (base > best_base)
            best_base = torch.where(nearer, base.expand_as(best_base), best_base)
            best_rgb = torch.where(nearer.unsqueeze(1), rgb.expand_as(best_rgb), best_rgb)
        covered = (best_base >= 0).float()
        frame = _over(frame, best_rgb * tint, covered)
        depth = depth * (1 - covered) + 0.45 * covered
        return frame, depth

    # ---- biomes: each returns the full frame (sky + land) and a fog depth map ----
    def _land_common(self, sky, ground_rgb):
        y = self._y
        land = _smoothstep(HORIZON_Y - self._px, HORIZON_Y + self._px, y)
        frame = _over(sky, ground_rgb, land.expand(sky.shape[0], -1, self.width))
        depth = 1.0 - land * (0.45 + 0.5 * ((y - HORIZON_Y) / (REF_H - HORIZON_Y)).clamp(0, 1))
        return frame, depth.expand(sky.shape[0], -1, self.width).clone()

    def _with_mountains(self, frame, depth, sky, cam, tint, **kw):
        rgb, cover = self._mountains(sky, cam, tint, **kw)
        cover = cover * (self._y < HORIZON_Y + 1).float()
        frame = _over(frame, rgb, cover)
        depth = depth * (1 - cover) + 0.85 * cover
        return frame, depth

    def _land_forest(self, sky, cam, t, tp, tint):
        dev = self.device
        ground = self._ground(cam, 101, _rgb((0.20, 0.42, 0.14), dev),
                              _rgb((0.30, 0.52, 0.18), dev)) * tint
        frame, depth = self._land_common(sky, ground)
        frame, depth = self._with_mountains(frame, depth, sky, cam, tint, salt=102,
                                            base_rgb=_rgb((0.28, 0.40, 0.42), dev),
                                            cap_rgb=None, cap_level=0.0, height=40.0)
        frame, depth = self._pine_trees(frame, depth, cam, tint, 103,
                                        _rgb((0.10, 0.32, 0.14), dev), snowy=False)
        return self._road(frame, depth, cam, tint, tp, _rgb((0.30, 0.29, 0.27), dev),
                          _rgb((0.85, 0.82, 0.60), dev))

    def _land_snow(self, sky, cam, t, tp, tint):
        dev = self.device
        ground = self._ground(cam, 201, _rgb((0.86, 0.90, 0.96), dev),
                              _rgb((0.95, 0.97, 1.00), dev)) * tint
        frame, depth = self._land_common(sky, ground)
        frame, depth = self._with_mountains(frame, depth, sky, cam, tint, salt=202,
                                            base_rgb=_rgb((0.45, 0.50, 0.60), dev),
                                            cap_rgb=_rgb((0.96, 0.97, 1.0), dev),
                                            cap_level=0.45, height=46.0)
        frame, depth = self._pine_trees(frame, depth, cam, tint, 203,
                                        _rgb((0.10, 0.26, 0.20), dev), snowy=True)
        return self._road(frame, depth, cam, tint, tp, _rgb((0.55, 0.57, 0.62), dev),
                          _rgb((0.95, 0.95, 0.95), dev))

    def _land_desert(self, sky, cam, t, tp, tint):
        dev = self.device
        x, y = self._x, self._y
        ground = self._ground(cam, 301, _rgb((0.88, 0.70, 0.44), dev),
                              _rgb((0.80, 0.60, 0.36), dev), scale=5.0) * tint
        frame, depth = self._land_common(sky, ground)
        frame, depth = self._with_mountains(frame, depth, sky, cam, tint, salt=302,
                                            base_rgb=_rgb((0.72, 0.42, 0.30), dev),
                                            cap_rgb=None, cap_level=0.0, height=44.0,
                                            mesa=True)
        # Dunes: a mid-distance ridge (parallax 0.6) with a lit and a shaded face.
        wx = (x + cam * 0.6) / 30.0
        crest = HORIZON_Y + 2.0 - 10.0 * _fbm1(self.seed, 303, wx, octaves=3)
        slope = _fbm1(self.seed, 303, wx + 0.02, octaves=3) - _fbm1(self.seed, 303, wx, 3)
        dune = _smoothstep(-self._px, self._px, y - crest) * (y < ROAD_TOP).float()
        dune_rgb = _rgb((0.93, 0.76, 0.50), dev) * (1.0 - 4.0 * slope.clamp(-0.1, 0.1)
                                                    ).unsqueeze(1)
        frame = _over(frame, dune_rgb * tint, dune)
        depth = depth * (1 - dune) + 0.6 * dune
        # Saguaro cacti in 40-unit cells.
        wx = x + cam
        cell = torch.floor(wx / 40.0).to(torch.int64)
        present = _hash(self.seed, 304, cell) < 0.6
        cx = (cell.to(torch.float32) + 0.25 + 0.5 * _hash(self.seed, 305, cell)) * 40.0
        height = 14.0 + 12.0 * _hash(self.seed, 306, cell)
        base = 110.0 + 10.0 * _hash(self.seed, 307, cell)
        dx = wx - cx
        trunk = (dx.abs() < 2.0) & (y > base - height) & (y < base)
        arm_y = base - height * 0.55
        left_arm = ((dx > -7) & (dx < -2) & ((y - arm_y).abs() < 1.5)) | \
            (((dx + 6).abs() < 1.5) & (y > arm_y - 7) & (y < arm_y + 1))
        right_arm = ((dx < 6) & (dx > 2) & ((y - arm_y - 3).abs() < 1.5)) | \
            (((dx - 5).abs() < 1.5) & (y > arm_y - 4) & (y < arm_y + 4))
        cactus = ((trunk | left_arm | right_arm) & present).float()
        frame = _over(frame, _rgb((0.22, 0.45, 0.22), dev) * tint, cactus)
        return self._road(frame, depth, cam, tint, tp, _rgb((0.40, 0.36, 0.32), dev),
                          _rgb((0.95, 0.90, 0.72), dev))

    def _land_city(self, sky, cam, t, tp, tint):
        dev = self.device
        x, y = self._x, self._y
        b = sky.shape[0]
        ground = self._ground(cam, 401, _rgb((0.42, 0.42, 0.45), dev),
                              _rgb((0.50, 0.50, 0.52), dev), scale=8.0) * tint
        frame, depth = self._land_common(sky, ground)
        # Far skyline instead of mountains: flat-topped blocks at parallax 0.3.
        wx = x + cam * MOUNTAIN_PARALLAX
        far_cell = torch.floor(wx / 12.0).to(torch.int64)
        far_top = HORIZON_Y - 8.0 - 30.0 * _hash(self.seed, 402, far_cell)
        far = (y > far_top).float() * (y < HORIZON_Y + 1).float()
        haze = sky[:, :, int(self.height * HORIZON_Y / REF_H) - 1].unsqueeze(2)
        far_rgb = _rgb((0.35, 0.38, 0.45), dev) * (0.45 + 0.55 * tint) * 0.6 + haze * 0.4
        frame = _over(frame, far_rgb, far)
        depth = depth * (1 - far) + 0.85 * far
        # Near buildings in 30-unit cells with lit windows after dark.
        wx = x + cam
        cell = torch.floor(wx / 30.0).to(torch.int64)
        left = (cell.to(torch.float32) + 0.08 * _hash(self.seed, 403, cell)) * 30.0
        width = 22.0 + 7.0 * _hash(self.seed, 404, cell)
        present = _hash(self.seed, 405, cell) < 0.85
        height = 26.0 + 36.0 * _hash(self.seed, 406, cell)
        base = 116.0
        lx = wx - left
        ly = base - y
        body = ((lx >= 0) & (lx < width) & (ly > 0) & (ly < height) & present).float()
        tone = 0.75 + 0.3 * _hash(self.seed, 407, cell)
        wall = torch.stack([0.55 * tone, 0.50 * tone, 0.46 * tone + 0.05], dim=1)
        win = ((torch.remainder(lx, 6.0) > 2.0) & (torch.remainder(lx, 6.0) < 4.5)
               & (torch.remainder(ly, 7.0) > 2.5) & (torch.remainder(ly, 7.0) < 5.5)
               & (lx > 1.5) & (lx < width - 1.5) & (ly > 4) & (ly < height - 3)).float()
        lit = (_hash(self.seed, 408, cell.expand(b, self.height, self.width),
                     torch.floor(lx / 6.0).to(torch.int64).expand(b, self.height, self.width),
                     torch.floor(ly / 7.0).to(torch.int64).expand(b, self.height, self.width))
               < 0.55).float()
        glass = _rgb((0.30, 0.38, 0.48), dev)
        rgb = wall * (1 - win.unsqueeze(1)) + glass * win.unsqueeze(1)
        rgb = rgb * tint
        lights = tp["lights"].view(b, 1, 1)
        window_glow = (win * lit * lights).unsqueeze(1) * _rgb((1.0, 0.85, 0.45), dev)
        rgb = rgb * (1 - (win * lit * lights).unsqueeze(1)) + window_glow
        frame = _over(frame, rgb, body)
        depth = depth * (1 - body) + 0.5 * body
        return self._road(frame, depth, cam, tint, tp, _rgb((0.22, 0.22, 0.24), dev),
                          _rgb((0.95, 0.95, 0.95), dev))

    def _land_coast(self, sky, cam, t, tp, tint):
        dev = self.device
        x, y = self._x, self._y
        b = sky.shape[0]
        sand = self._ground(cam, 501, _rgb((0.90, 0.80, 0.60), dev),
                            _rgb((0.84, 0.74, 0.54), dev), scale=4.0) * tint
        frame, depth = self._land_common(sky, sand)
        frame, depth = self._with_mountains(frame, depth, sky, cam, tint, salt=502,
                                            base_rgb=_rgb((0.30, 0.40, 0.36), dev),
                                            cap_rgb=None, cap_level=0.0, height=20.0)
        # Sea: from the horizon to a wavy shore, darker far away, sparkling with the sky light.
        wx = x + cam
        shore = SEA_SHORE_Y + 2.0 * torch.sin(wx / 9.0 + t * 1.2) + \
            3.0 * _fbm1(self.seed, 503, wx / 50.0, 2)
        sea = ((y >= HORIZON_Y - 0.5).float()
               * (1.0 - _smoothstep(-self._px, self._px, y - shore)))
        g = ((y - HORIZON_Y) / (SEA_SHORE_Y - HORIZON_Y)).clamp(0, 1).unsqueeze(1)
        water = _rgb((0.06, 0.22, 0.40), dev) * (1 - g) + _rgb((0.10, 0.45, 0.55), dev) * g
        water = water * (0.5 + 0.5 * tint) + 0.25 * tp["sky_horizon"].view(b, 3, 1, 1)
        glint_cell = _hash(self.seed, 504, torch.floor(wx / 3.0).to(torch.int64),
                           torch.floor(y).to(torch.int64),
                           torch.floor(t * 2.0).to(torch.int64))
        glint = (glint_cell > 0.93).float() * 0.35
        water = water + glint.unsqueeze(1) * tp["sun_rgb"].view(b, 3, 1, 1) * \
            (0.3 + 0.7 * tint.mean(dim=1, keepdim=True))
        foam = (1.0 - _smoothstep(0.0, 1.6, (y - shore).abs())) * 0.8
        frame = _over(frame, water, sea)
        frame = _over(frame, _rgb((0.95, 0.97, 1.0), dev) * tint, foam)
        depth = depth * (1 - sea) + 0.7 * sea
        # Palms on the beach, 60-unit cells.
        cell = torch.floor(wx / 60.0).to(torch.int64)
        present = _hash(self.seed, 505, cell) < 0.55
        cx = (cell.to(torch.float32) + 0.2 + 0.6 * _hash(self.seed, 506, cell)) * 60.0
        base = 121.0
        height = 26.0 + 10.0 * _hash(self.seed, 507, cell)
        lean = 0.25 * (2 * _hash(self.seed, 508, cell) - 1)
        h_up = (base - y).clamp(0, None)
        trunk_x = cx + lean * h_up + 0.004 * h_up * h_up * torch.sign(lean)
        trunk = (((wx - trunk_x).abs() < 1.3) & (y < base) & (y > base - height)).float()
        top_x = cx + lean * height + 0.004 * height * height * torch.sign(lean)
        top_y = base - height
        dx, dy = wx - top_x, y - top_y
        angle = torch.atan2(dy, dx)
        r = torch.sqrt(dx * dx + dy * dy)
        # Five drooping fronds: thin wedges in polar coordinates.
        frond = (torch.cos(5.0 * (angle + 0.3)) > 0.55).float() * (r < 12.0).float() * \
            (dy > -5.0 - 0.0 * r).float()
        palm = (torch.maximum(trunk, frond) * present.float())
        palm_rgb = _rgb((0.40, 0.28, 0.16), dev) * trunk.unsqueeze(1) + \
            _rgb((0.16, 0.40, 0.16), dev) * (1 - trunk.unsqueeze(1))
        frame = _over(frame, palm_rgb * tint, palm)
        depth = depth * (1 - palm) + 0.5 * palm
        return self._road(frame, depth, cam, tint, tp, _rgb((0.32, 0.31, 0.30), dev),
                          _rgb((0.95, 0.95, 0.95), dev))

    # ---- subjects and weather ----
    def _subjects(self, frame, s, b, cam, t, tint, tp, fog_rgb, fog):
        dev = self.device
        w = s["w_subject"]                                       # none, birds, balloons, cars
        colour = (s["w_colour"] @ torch.tensor([SUBJECT_RGB[c] for c in AXES["colour"]],
                                               dtype=torch.float32, device=dev)).view(b, 3, 1, 1)
        lit = 0.55 + 0.45 * tint                                 # subjects stay readable at night
        haze = 0.2 * fog.unsqueeze(1)
        colour = colour * (1.0 - haze) + fog_rgb * haze / lit
        x, y = self._x, self._y
        span = REF_W + 60.0
        if bool((w[:, 1] > 0).any()):
            # Three flocks of five birds in a V (leader ahead, wings trailing above and below),
            # a third of the wrap span apart so that two are always in view, flapping.
            alpha = torch.zeros((b, self.height, self.width), device=dev)
            for i in range(15):
                h = lambda salt: float(_hash(self.seed, 600 + salt, torch.tensor([i]))[0])  # noqa
                flock, slot = divmod(i, 5)
                row = abs(slot - 2)
                side = -1.0 if slot < 2 else 1.0
                bx = torch.remainder(span * flock / 3.0 + 14.0 * t - 0.5 * cam - 11.0 * row
                                     + 3.0 * h(0), span) - 30.0
                by = (12.0 + 8.0 * flock + 4.0 * side * row + 2.0 * h(1)
                      + 1.5 * torch.sin(t * 0.8 + flock))
                flap = 1.8 * torch.sin(t * 9.0 + 6.28 * h(2))
                lx, ly = x - bx, y - by
                wing = (ly + flap * (lx.abs() / 8.0) - 1.0 * (1 - lx.abs() / 8.0)).abs()
                body = ((lx.abs() < 8.0).float()
                        * (1.0 - _smoothstep(1.2, 1.2 + self._px, wing)))
                alpha = torch.maximum(alpha, body)
            a = alpha * w[:, 1].view(b, 1, 1)
            frame = _over(frame, colour * lit, a)
        if bool((w[:, 2] > 0).any()):
            # Three hot-air balloons drifting slowly: striped envelope, basket, ropes.
            for i in range(3):
                h = lambda salt: float(_hash(self.seed, 620 + salt, torch.tensor([i]))[0])  # noqa
                bx = torch.remainder(span * (i / 3.0 + 0.1 * h(0)) + 4.0 * t - 0.6 * cam,
                                     span) - 30.0
                by = 18.0 + 14.0 * h(1) + 2.5 * torch.sin(t * 0.5 + 2 * i)
                r = 9.0 + 3.0 * h(2)
                lx, ly = x - bx, y - by
                env = (lx / r) ** 2 + (ly / (r * 1.15)) ** 2 * (1.0 + 0.25 * (ly > 0).float())
                envelope = 1.0 - _smoothstep(1.0 - self._px / r, 1.0 + self._px / r, env)
                stripe = (torch.cos(lx / r * 5.0) > 0).float().unsqueeze(1)
                shade = 1.0 - 0.25 * (lx / r).clamp(-1, 1).unsqueeze(1)
                env_rgb = colour * lit * shade * (0.8 + 0.2 * stripe)
                basket_y = by + r * 1.15 + 4.0
                basket = ((lx.abs() < 2.5) & ((y - basket_y).abs() < 1.8)).float()
                ropes = (((lx.abs() - 2.0).abs() < 0.45) & (y > by + r * 0.8) &
                         (y < basket_y)).float()
                a_env = envelope * w[:, 2].view(b, 1, 1)
                frame = _over(frame, env_rgb, a_env)
                a_bask = torch.maximum(basket, ropes) * (1 - envelope) * w[:, 2].view(b, 1, 1)
                frame = _over(frame, _rgb((0.35, 0.24, 0.14), dev) * lit, a_bask)
        if bool((w[:, 3] > 0).any()):
            # Four cars, two lanes in opposite directions, headlights after dark.
            lights = tp["lights"].view(b, 1, 1)
            for i in range(4):
                h = lambda salt: float(_hash(self.seed, 640 + salt, torch.tensor([i]))[0])  # noqa
                direction = 1.0 if i % 2 == 0 else -1.0
                lane_y = 130.0 if direction > 0 else 136.0
                speed = 20.0 + 10.0 * h(1)
                cx = torch.remainder(span * (i / 4.0 + 0.1 * h(0)) + direction * speed * t - cam,
                                     span) - 30.0
                lx, ly = (x - cx) * direction, lane_y - y
                body = ((lx.abs() < 11.0) & (ly > 1.0) & (ly < 6.0)).float()
                cabin = ((lx > -6.0) & (lx < 4.0 - (ly - 6.0)) & (ly >= 6.0) &
                         (ly < 10.0)).float()
                window = cabin * ((lx > -4.5) & (lx < 2.5 - (ly - 6.0)) & (ly > 6.5) &
                                  (ly < 9.2)).float()
                wheel = ((((lx - 6.5) ** 2 + (ly - 1.5) ** 2) < 5.0) |
                         (((lx + 6.5) ** 2 + (ly - 1.5) ** 2) < 5.0)).float()
                head = ((lx > 9.5) & (lx < 11.0) & (ly > 3.0) & (ly < 5.0)).float()
                a_body = torch.maximum(body, cabin) * w[:, 3].view(b, 1, 1)
                frame = _over(frame, colour * lit, a_body)
                frame = _over(frame, _rgb((0.55, 0.70, 0.85), dev) * tint,
                              window * w[:, 3].view(b, 1, 1))
                frame = _over(frame, _rgb((0.05, 0.05, 0.05), dev),
                              wheel * w[:, 3].view(b, 1, 1))
                frame = _over(frame, _rgb((1.0, 0.95, 0.7), dev),
                              head * (0.3 + 0.7 * lights) * w[:, 3].view(b, 1, 1))
        return frame

    def _rain(self, frame, b, t, rain, tint):
        """Slanted streaks falling fast, in screen space (rain is near the camera)."""
        x, y = self._x, self._y
        u = x + 0.3 * y
        column = torch.floor(u / 3.0).to(torch.int64)
        phase = _hash(self.seed, 701, column) * 200.0
        keep = _hash(self.seed, 702, column) < 0.45
        v = torch.remainder(y + t * 260.0 + phase, 40.0)
        across = (torch.remainder(u, 3.0) - 1.5).abs()
        streak = ((v < 9.0) & keep).float() * (1.0 - _smoothstep(0.35, 0.35 + self._px, across))
        colour = torch.tensor([0.80, 0.84, 0.90], device=self.device).view(1, 3, 1, 1)
        return _over(frame, colour * (0.5 + 0.5 * tint), streak * rain * 0.55)

    def _snowfall(self, frame, b, cam, t, amount, tint):
        """Two layers of flakes drifting down and sideways, near layer larger and faster."""
        x, y = self._x, self._y
        flakes = torch.zeros((b, self.height, self.width), device=self.device)
        for layer, (cell, fall, radius, parallax) in enumerate(((9.0, 14.0, 1.0, 0.6),
                                                                  (14.0, 24.0, 1.6, 1.0))):
            sx = x + cam * parallax + 6.0 * torch.sin(t * 0.7 + layer)
            sy = y - t * fall
            cx = torch.floor(sx / cell).to(torch.int64)
            cy = torch.floor(sy / cell).to(torch.int64)
            cx, cy = torch.broadcast_tensors(cx, cy)
            ox = _hash(self.seed, 711 + layer, cx, cy) * (cell - 4) + 2
            oy = _hash(self.seed, 721 + layer, cx, cy) * (cell - 4) + 2
            present = _hash(self.seed, 731 + layer, cx, cy) < 0.5
            lx = sx - cx.to(torch.float32) * cell - ox
            ly = sy - cy.to(torch.float32) * cell - oy
            d = torch.sqrt(lx * lx + ly * ly)
            flakes = torch.maximum(flakes, present.float() *
                                   (1.0 - _smoothstep(radius, radius + self._px, d)))
        colour = torch.tensor([0.97, 0.98, 1.0], device=self.device).view(1, 3, 1, 1)
        return _over(frame, colour * (0.55 + 0.45 * tint), flakes * amount * 0.9)


# --- image files -----------------------------------------------------------------------------
def save_png(frame_chw: torch.Tensor, path: Path) -> None:
    from PIL import Image
    Image.fromarray(frame_chw.permute(1, 2, 0).cpu().numpy()).save(path)


def load_schedule(path: Path) -> List[Dict[str, object]]:
    schedule = json.loads(Path(path).read_text())
    if not isinstance(schedule, list) or not all(
            isinstance(e, dict) and "frame" in e and "prompt" in e for e in schedule):
        raise ValueError(f"{path}: expected a JSON list of {{\"frame\": F, \"prompt\": \"...\"}}")
    return schedule


def render_to_dir(schedule, frames: int, seed: int, out: Path, width: int, height: int,
                  fps: int = 12, device: str = "cpu") -> List[Dict[str, object]]:
    world = World(seed, width, height, fps=fps, device=device)
    out.mkdir(parents=True, exist_ok=True)
    video, labels = world.render_schedule(schedule, frames)
    for i in range(frames):
        save_png(video[i], out / f"frame_{i:06d}.png")
    meta = {"seed": seed, "width": width, "height": height, "fps": fps, "frames": frames,
            "schedule": schedule, "labels": labels}
    (out / "labels.json").write_text(json.dumps(meta, indent=1))
    return labels


# --- example strips (docs/world.md) ----------------------------------------------------------
def _strip(rows: List[Tuple[str, torch.Tensor]], path: Path, scale: int = 1,
           notes: Optional[List[List[str]]] = None) -> None:
    """Rows of frames [n,3,H,W] with a caption on the left (and an optional note on each
    frame), saved as one PNG."""
    from PIL import Image, ImageDraw
    caption_w, gap = 120, 4
    n = max(r[1].shape[0] for r in rows)
    h, w = rows[0][1].shape[2] * scale, rows[0][1].shape[3] * scale
    canvas = Image.new("RGB", (caption_w + n * (w + gap), len(rows) * (h + gap) + gap),
                       (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    for r, (caption, frames) in enumerate(rows):
        top = gap + r * (h + gap)
        for line, text in enumerate(caption.split("\n")):
            draw.text((8, top + h // 2 - 12 + 14 * line), text, fill=(230, 230, 230))
        for i in range(frames.shape[0]):
            img = Image.fromarray(frames[i].permute(1, 2, 0).cpu().numpy())
            if scale != 1:
                img = img.resize((w, h), Image.NEAREST)
            canvas.paste(img, (caption_w + i * (w + gap), top))
            if notes is not None:
                x0 = caption_w + i * (w + gap) + 4
                draw.rectangle((x0 - 2, top + 2, x0 + 6 * len(notes[r][i]) + 2, top + 14),
                               fill=(0, 0, 0))
                draw.text((x0, top + 3), notes[r][i], fill=(255, 255, 255))
    canvas.save(path)


def make_strips(out: Path, seed: int) -> List[Path]:
    out.mkdir(parents=True, exist_ok=True)
    world = World(seed, 256, 144)
    written = []

    def frames_for(attrs: Dict[str, str], xs: Sequence[float], start: int = 0) -> torch.Tensor:
        return world.render_attributes([dict(attrs, camera_x=x, frame=start + 5 * i)
                                        for i, x in enumerate(xs)])

    xs = [0.0, 400.0, 900.0]
    rows = [(f"time: {v}", frames_for({"time": v, "biome": "snow"}, xs)) for v in AXES["time"]]
    written.append(out / "world-time.png")
    _strip(rows, written[-1])
    rows = [(f"biome: {v}", frames_for({"biome": v, "time": "day"}, xs)) for v in AXES["biome"]]
    written.append(out / "world-biome.png")
    _strip(rows, written[-1])
    rows = [(f"weather: {v}", frames_for({"weather": v, "biome": b, "time": tm}, xs))
            for v, b, tm in (("clear", "coast", "day"), ("rain", "city", "dusk"),
                             ("snow", "forest", "dawn"), ("fog", "snow", "day"))]
    written.append(out / "world-weather.png")
    _strip(rows, written[-1])
    rows = [(f"subject: {s}\ncolour: {c}", frames_for({"subject": s, "colour": c, "biome": b,
                                                       "time": tm}, xs))
            for s, c, b, tm in (("birds", "white", "coast", "dusk"),
                                ("balloons", "red", "desert", "day"),
                                ("balloons", "blue", "snow", "dawn"),
                                ("cars", "yellow", "city", "night"))]
    written.append(out / "world-subject.png")
    _strip(rows, written[-1])
    # A dusk transition: day -> dusk at frame 2, every other frame for 1.5 s and after.
    schedule = [{"frame": 0, "prompt": "a pine forest in broad daylight with red balloons"},
                {"frame": 2, "prompt": "the forest at dusk"}]
    video, _ = world.render_schedule(schedule, 24)
    rows = [("day -> dusk\nframes 0-10", video[0:12:2]), ("frames 12-22", video[12:24:2])]
    written.append(out / "world-transition.png")
    _strip(rows, written[-1])
    # A pan right then back left over the city: the second row finds, for each frame of the
    # first, the later frame at the same camera position: the same buildings come back.
    schedule = [{"frame": 0, "prompt": "a city skyline at dusk with blue cars, quick pan right"},
                {"frame": 40, "prompt": "a city skyline at dusk with blue cars, quick pan left"}]
    video, labels = world.render_schedule(schedule, 96)
    xs_all = [lab["camera_x"] for lab in labels]
    out_picks = [4, 12, 20, 28, 36]
    back_picks = [min(range(50, 96), key=lambda j: abs(xs_all[j] - xs_all[i])) for i in out_picks]
    rows = [("pan right\n(going out)", video[out_picks]),
            ("then pan left\n(coming back)", video[back_picks])]
    notes = [[f"frame {i}  x={xs_all[i]:.0f}" for i in picks] for picks in (out_picks, back_picks)]
    written.append(out / "world-pan.png")
    _strip(rows, written[-1], notes=notes)
    return written


# --- CLI -------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render ground-truth frames and labels for a schedule")
    r.add_argument("--schedule", type=Path, required=True)
    r.add_argument("--frames", type=int, required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--width", type=int, default=256)
    r.add_argument("--height", type=int, default=144)
    r.add_argument("--fps", type=int, default=12)
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    st = sub.add_parser("strip", help="write the example strips of docs/world.md")
    st.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent /
                    "docs" / "images")
    st.add_argument("--seed", type=int, default=3)
    st.add_argument("--threads", type=int, default=1)
    bn = sub.add_parser("bench", help="frames per second of a mixed schedule")
    bn.add_argument("--frames", type=int, default=192)
    bn.add_argument("--width", type=int, default=256)
    bn.add_argument("--height", type=int, default=144)
    bn.add_argument("--device", default="cpu")
    bn.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.command == "render":
        render_to_dir(load_schedule(args.schedule), args.frames, args.seed, args.out,
                      args.width, args.height, args.fps, args.device)
        print(f"wrote {args.frames} frames and labels.json to {args.out}")
    elif args.command == "strip":
        for path in make_strips(args.out, args.seed):
            print(path)
    else:
        schedule = [{"frame": 0, "prompt": "red balloons over a forest at dawn, slow pan right"},
                    {"frame": args.frames // 4, "prompt": "cars in a city at night in the rain"},
                    {"frame": args.frames // 2, "prompt": "birds over the coast at dusk, fog"},
                    {"frame": 3 * args.frames // 4,
                     "prompt": "snowfall over a frozen desert by day, quick pan left"}]
        world = World(1, args.width, args.height, device=args.device)
        world.render_schedule(schedule, 8)                      # warm-up
        if world.device.type == "cuda":
            torch.cuda.synchronize()
        start = time_module.perf_counter()
        world.render_schedule(schedule, args.frames)
        if world.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time_module.perf_counter() - start
        print(json.dumps({"device": str(world.device), "threads": torch.get_num_threads(),
                          "width": args.width, "height": args.height, "frames": args.frames,
                          "seconds": round(seconds, 3),
                          "frames_per_s": round(args.frames / seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Scores a rendered video against its prompt schedule, from pixels only.

    evaluate.py --frames DIR --schedule S.json --json OUT [--fps 12 --seed 0 --block-frames N]
    evaluate.py --validate [--json OUT]       ground truth vs its own and a mismatched schedule

DIR holds the frames as PNG files (sorted by name: frame_000000.png ...), any size (16:9
expected). The schedule is strand-cli's ([{"frame": F, "prompt": "..."}]); the prompts are parsed
with world_vocab.parse_schedule into the attributes each frame should show.

Measurements (classical image statistics, no learned network):
- per frame, each attribute is measured: time of day, biome, weather and subject by the nearest
  neighbours (k=5, standardised features) among calibration frames that world.py renders for
  every time x biome x weather x subject combination; features are medians of colour bands,
  gradient energies, contrast, and the amount, saturation and thickness of pixels that stand out
  from their row (subjects). The subject's colour is the dominant hue of those pixels. The camera
  is measured from the horizontal shift between consecutive frames (sum of absolute differences
  over candidate shifts on the scenery band, refined to sub-pixel by a parabola).
- adherence: per attribute, the fraction of frames whose measurement equals the active prompt's
  value, leaving out the frames within --exclude-frames after each prompt change;
- switch latency: frames from a prompt change until the new value is measured on 3 frames in a
  row (per attribute that changed), or null when that never happens within --max-latency;
- flicker: mean absolute difference between consecutive frames after shifting by the measured
  pan, relative to the same number for world.py's own render of the schedule;
- drift: adherence and colour statistics of the last 10% of frames against the first 10%;
- revisit consistency: the pan estimates are summed into a camera track; frame pairs at the same
  position, at least --revisit-gap frames apart, with the camera having gone at least half a
  screen away in between and the same time/biome/weather prompted, are aligned (+-8 px search)
  and compared on the land band (mean absolute difference and correlation); the world's own
  render gives the reference.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import world as world_module  # noqa: E402
from world import (CAMERA_SPEED_UNITS_PER_S, HORIZON_Y, REF_H, REF_W, ROAD_BOTTOM,  # noqa: E402
                   ROAD_TOP, SKY_ZONE_Y, SUBJECT_RGB, World)
from world_vocab import AXES, parse_schedule  # noqa: E402

FEATURE_W, FEATURE_H = 128, 72          # frames are measured at this size
UNITS_PER_ROW = REF_H / FEATURE_H
KNN_K = 5
CALIBRATION_SEED = 977
CALIBRATION_FRAMES_PER_COMBO = 2        # 640 frames at the feature size, about 4 s on one core
LATENCY_RUN = 3                         # consecutive frames that count as "measured"
CLASSIFIED_AXES = ("time", "biome", "weather")


def _rows(y0_units: float, y1_units: float) -> slice:
    return slice(int(y0_units / UNITS_PER_ROW), max(int(y0_units / UNITS_PER_ROW) + 1,
                                                    int(y1_units / UNITS_PER_ROW)))


SKY_TOP, SKY_MID, SKY_ZONE = _rows(0, 12), _rows(24, 40), _rows(0, SKY_ZONE_Y)
UPPER_LAND = _rows(56, HORIZON_Y)               # mountains, tree tops, buildings
NEAR_LAND = _rows(HORIZON_Y, 106)               # sea / ground just below the horizon
FORE_LAND = _rows(108, 120)                     # beach / ground before the road
BOTTOM = _rows(140, 144)
LAND = _rows(56, 144)
ROAD_ZONE = _rows(ROAD_TOP - 6, ROAD_BOTTOM)
PAN_BAND_UNITS = (HORIZON_Y, 118.0)             # scenery and ground at parallax 1


# --- loading ---------------------------------------------------------------------------------
def load_frames(directory: Path) -> torch.Tensor:
    """All PNG files in ``directory`` sorted by name -> uint8 [N, 3, H, W]."""
    from PIL import Image
    import numpy as np
    paths = sorted(Path(directory).glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no PNG frames in {directory}")
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"frames in {directory} differ in size: {sorted(shapes)}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def expected_attributes(schedule: Sequence[Mapping[str, object]], frames: int
                        ) -> Tuple[List[Dict[str, str]], List[int]]:
    """Per-frame prompted attributes and the frames where any attribute changes."""
    parsed = parse_schedule(schedule)
    if not parsed:
        raise ValueError("empty schedule")
    out, entry = [], 0
    for i in range(frames):
        while entry + 1 < len(parsed) and parsed[entry + 1][0] <= i:
            entry += 1
        out.append(parsed[entry][1])
    switches = [i for i in range(1, frames) if out[i] != out[i - 1]]
    return out, switches


# --- features --------------------------------------------------------------------------------
def _to_feature_size(frames_u8: torch.Tensor) -> torch.Tensor:
    x = frames_u8.float() / 255.0
    if x.shape[-2:] != (FEATURE_H, FEATURE_W):
        x = F.interpolate(x, size=(FEATURE_H, FEATURE_W), mode="area")
    return x


def _band_median(x: torch.Tensor, rows: slice) -> torch.Tensor:
    band = x[:, :, rows, :].flatten(2)
    return band.median(dim=2).values                                   # [N, 3]


def _saturation_value(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    mx = x.max(dim=1).values
    mn = x.min(dim=1).values
    return (mx - mn) / mx.clamp(min=1e-3), mx


def _hue_degrees(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    # atan2 form of the hexagonal hue: close enough to HSV hue for palette matching.
    return torch.rad2deg(torch.atan2(3 ** 0.5 * (g - b), 2 * r - g - b)) % 360.0


STANDOUT_L1 = 0.15          # colour distance (sum over RGB in 0-1) that makes a pixel stand out
BACKGROUND_WINDOW = 41      # columns of the running median that models the sky or road


def _standouts(x: torch.Tensor, rows: slice, running: bool = True) -> torch.Tensor:
    """Pixels whose colour differs from the running median of their row (BACKGROUND_WINDOW
    columns, edges replicated), or from the whole row's median when not ``running``:
    subjects, the sun disk, stars, raindrops, snowflakes. A row median would flag the sun's
    wide glow in the sky; on the road it is safer (two cars close together fill a window)."""
    band = x[:, :, rows, :]
    if not running:
        median = band.median(dim=3, keepdim=True).values
        return (band - median).abs().sum(dim=1) > STANDOUT_L1
    half = BACKGROUND_WINDOW // 2
    padded = F.pad(band, (half, half, 0, 0), mode="replicate")
    out = []
    for start in range(0, band.shape[0], 16):          # bounds the unfolded copy's memory
        windows = padded[start:start + 16].unfold(3, BACKGROUND_WINDOW, 1)
        background = windows.median(dim=4).values
        out.append((band[start:start + 16] - background).abs().sum(dim=1) > STANDOUT_L1)
    return torch.cat(out)


def _gradient_energy(x: torch.Tensor, rows: slice) -> torch.Tensor:
    lum = x[:, :, rows, :].mean(dim=1)
    gx = (lum[:, :, 1:] - lum[:, :, :-1]).abs().mean(dim=(1, 2))
    gy = (lum[:, 1:, :] - lum[:, :-1, :]).abs().mean(dim=(1, 2))
    return torch.stack([torch.log(gx + 1e-4), torch.log(gy + 1e-4),
                        torch.log(gx + 1e-4) - torch.log(gy + 1e-4)], dim=1)


def frame_features(frames_u8: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-axis feature matrices [N, k] for a batch of frames of any size."""
    x = _to_feature_size(frames_u8)
    lum = x.mean(dim=1)
    sky_top = _band_median(x, SKY_TOP)
    sky_mid = _band_median(x, SKY_MID)
    near = _band_median(x, NEAR_LAND)
    fore = _band_median(x, FORE_LAND)
    bottom = _band_median(x, BOTTOM)
    upper = _band_median(x, UPPER_LAND)
    land_std = lum[:, LAND, :].flatten(1).std(dim=1, keepdim=True)
    sat, _ = _saturation_value(x)
    lighting = torch.cat([sky_top, sky_mid, upper], dim=1)
    time = torch.cat([sky_top, sky_mid, near.mean(1, keepdim=True),
                      fore.mean(1, keepdim=True)], dim=1)
    biome = torch.cat([near, fore, bottom, upper, land_std,
                       _gradient_energy(x, UPPER_LAND), _gradient_energy(x, FORE_LAND),
                       sky_top], dim=1)
    weather = torch.cat([_gradient_energy(x, SKY_ZONE), _gradient_energy(x, UPPER_LAND), land_std,
                         lum[:, SKY_ZONE, :].flatten(1).std(dim=1, keepdim=True),
                         sat.flatten(1).mean(dim=1, keepdim=True), lighting], dim=1)
    return {"time": time, "biome": biome, "weather": weather}


_PALETTE_HUES = {name: float(_hue_degrees(torch.tensor(rgb).view(1, 3, 1, 1)).item())
                 for name, rgb in SUBJECT_RGB.items() if name != "white"}


def _at_256(frames_u8: torch.Tensor) -> torch.Tensor:
    """Float frames resized (area) to 256 x 144, the reference canvas at one unit per pixel."""
    x = frames_u8.float() / 255.0
    if x.shape[-2:] != (int(REF_H), int(REF_W)):
        x = F.interpolate(x, size=(int(REF_H), int(REF_W)), mode="area")
    return x


def _erode(mask: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Binary erosion [N, h, W] with a kh x kw rectangle (a min-pool)."""
    m = mask.float().unsqueeze(1)
    eroded = -F.max_pool2d(-m, (kh, kw), stride=1, padding=(kh // 2, kw // 2))
    return eroded[:, 0, :mask.shape[1], :mask.shape[2]] > 0.5


def _dilate(mask: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    m = mask.float().unsqueeze(1)
    dilated = F.max_pool2d(m, (kh, kw), stride=1, padding=(kh // 2, kw // 2))
    return dilated[:, 0, :mask.shape[1], :mask.shape[2]] > 0.5


SKY_ROWS_256 = slice(0, int(SKY_ZONE_Y))
ROAD_ROWS_256 = slice(int(ROAD_TOP), int(ROAD_BOTTOM))
# Decision thresholds on pixel counts at 256 x 144 (set from world renders; docs/evaluation.md).
CAR_MIN_PX = 30           # solid (3x5-eroded) stand-outs in the road band: ~1 car body
BALLOON_MIN_PX = 100      # 5x5-eroded stand-outs in the sky band: one balloon is ~250
BIRD_MIN_PX = 80          # horizontal runs of 6+ stand-out pixels left outside balloons


def subject_evidence(frames_u8: torch.Tensor, times: Optional[Sequence[str]] = None
                     ) -> Dict[str, torch.Tensor]:
    """Pixel counts that show each subject: solid blobs on the road (cars), big round blobs in
    the sky band (balloons) and thin horizontal strokes there (birds). The sun or moon disk of
    the measured time of day is masked first; stars, raindrops and snowflakes are too thin or
    too small to survive the erosions."""
    x = _at_256(frames_u8)
    sky = _standouts(x, SKY_ROWS_256)
    if times is not None:
        ys = torch.arange(sky.shape[1], dtype=torch.float32).view(-1, 1) + 0.5
        xs = torch.arange(sky.shape[2], dtype=torch.float32).view(1, -1) + 0.5
        for i, time in enumerate(times):
            if time in ("day", "night"):
                sun_x, sun_y = world_module.TIME_PARAMS[time]["sun_xy"]
                sky[i] &= ((xs - sun_x) ** 2 + (ys - sun_y) ** 2) > 13.0 ** 2
    blobs = _erode(sky, 5, 5)
    strokes = _erode(sky, 1, 6)
    # Birds of a flock that touch can leave a small eroded blob; only count strokes apart from
    # blobs when the blobs are big enough to be balloons.
    is_balloon = (blobs.flatten(1).sum(1) >= BALLOON_MIN_PX).view(-1, 1, 1)
    strokes = strokes & ~(_dilate(blobs, 9, 9) & is_balloon)
    road = _erode(_standouts(x, ROAD_ROWS_256, running=False), 3, 5)
    # The openings (erosion then dilation) are the subjects' own pixels, for their colour.
    return {"cars": road.flatten(1).sum(1), "balloons": blobs.flatten(1).sum(1),
            "birds": strokes.flatten(1).sum(1),
            "cars_px": _dilate(road, 3, 5), "balloons_px": _dilate(blobs, 5, 5),
            "birds_px": _dilate(strokes, 1, 6)}


def measure_subject(evidence: Mapping[str, torch.Tensor]) -> List[str]:
    out = []
    for cars, balloons, birds in zip(evidence["cars"].tolist(), evidence["balloons"].tolist(),
                                     evidence["birds"].tolist()):
        if cars >= CAR_MIN_PX:
            out.append("cars")
        elif balloons >= BALLOON_MIN_PX:
            out.append("balloons")
        elif birds >= BIRD_MIN_PX:
            out.append("birds")
        else:
            out.append("none")
    return out


def measure_colour(frames_u8: torch.Tensor, subjects: Sequence[str],
                   times: Optional[Sequence[str]] = None) -> List[Optional[str]]:
    """The subject's colour at 256 x 144, from the subject's own pixels (the opening of its
    evidence mask): "white" when their mean saturation is low, else the palette hue with the
    most saturation-weighted votes; None without a subject or when no pixel shows it."""
    x = _at_256(frames_u8)
    evidence = subject_evidence(frames_u8, times)
    out: List[Optional[str]] = []
    names = list(_PALETTE_HUES)
    hues = torch.tensor([_PALETTE_HUES[n] for n in names])
    for i, subject in enumerate(subjects):
        if subject == "none":
            out.append(None)
            continue
        rows = ROAD_ROWS_256 if subject == "cars" else SKY_ROWS_256
        mask = evidence[f"{subject}_px"][i]
        if not bool(mask.any()):
            out.append(None)
            continue
        band = x[i:i + 1, :, rows, :]
        sat, val = _saturation_value(band)
        sat, val = sat[0][mask], val[0][mask]
        # The median ignores the edge pixels that mix with a saturated sky (white birds at
        # dusk are peach-tinted but far below the palette colours' saturation).
        if float(sat.median()) < 0.35:
            out.append("white")
            continue
        hue = _hue_degrees(band)[0][mask]
        distance = (hue.view(-1, 1) - hues.view(1, -1)).abs()
        distance = torch.minimum(distance, 360.0 - distance)
        votes = torch.zeros(len(names)).index_add_(0, distance.argmin(dim=1), sat)
        out.append(names[int(votes.argmax())])
    return out


# --- calibration and classification ----------------------------------------------------------
@functools.lru_cache(maxsize=2)
def calibration(fps: int = 12, frames_per_combo: Optional[int] = None
                ) -> Tuple[Dict[str, torch.Tensor], Dict[str, List[str]]]:
    """Features and labels of world.py renders (at the feature size) for every time x biome x
    weather x subject combination, at scattered camera positions and clock times."""
    frames_per_combo = frames_per_combo or CALIBRATION_FRAMES_PER_COMBO
    rng = random.Random(CALIBRATION_SEED)
    world = World(CALIBRATION_SEED, FEATURE_W, FEATURE_H, fps=fps)
    attrs = []
    for time in AXES["time"]:
        for biome in AXES["biome"]:
            for weather in AXES["weather"]:
                for subject in AXES["subject"]:
                    for _ in range(frames_per_combo):
                        attrs.append({"time": time, "biome": biome, "weather": weather,
                                      "subject": subject, "colour": rng.choice(AXES["colour"]),
                                      "camera_x": rng.uniform(-5000, 5000),
                                      "frame": rng.randrange(0, 100000)})
    frames = world.render_attributes(attrs)
    features = frame_features(frames)
    labels = {axis: [a[axis] for a in attrs] for axis in CLASSIFIED_AXES}
    return features, labels


def classify(features: Mapping[str, torch.Tensor], fps: int = 12) -> Dict[str, List[str]]:
    """Per-axis k-nearest-neighbour vote among the calibration frames."""
    reference, labels = calibration(fps, CALIBRATION_FRAMES_PER_COMBO)
    out: Dict[str, List[str]] = {}
    for axis in CLASSIFIED_AXES:
        ref = reference[axis]
        mean, std = ref.mean(dim=0), ref.std(dim=0).clamp(min=1e-3)
        a = (features[axis] - mean) / std
        r = (ref - mean) / std
        nearest = torch.cdist(a, r).topk(KNN_K, largest=False).indices
        values = AXES[axis]
        index = {v: k for k, v in enumerate(values)}
        ref_idx = torch.tensor([index[v] for v in labels[axis]])
        votes = torch.zeros(a.shape[0], len(values))
        votes.scatter_add_(1, ref_idx[nearest], torch.ones(nearest.shape))
        out[axis] = [values[int(k)] for k in votes.argmax(dim=1)]
    return out


# --- camera motion ---------------------------------------------------------------------------
def _pan_band(frames_u8: torch.Tensor) -> torch.Tensor:
    """Luminance of the parallax-1 band at no more than 256 columns."""
    x = frames_u8.float().mean(dim=1, keepdim=True) / 255.0
    if x.shape[-1] > 256:
        x = F.interpolate(x, size=(round(x.shape[-2] * 256 / x.shape[-1]), 256), mode="area")
    h = x.shape[-2]
    y0, y1 = int(PAN_BAND_UNITS[0] / REF_H * h), int(PAN_BAND_UNITS[1] / REF_H * h)
    return x[:, 0, y0:y1, :]


def _best_shift(a: torch.Tensor, b: torch.Tensor, max_shift: int) -> Tuple[float, float]:
    """Sub-pixel s minimising mean |b[:, x] - a[:, x + s]|, and that minimum."""
    w = a.shape[-1]
    errors = []
    for s in range(-max_shift, max_shift + 1):
        if s >= 0:
            d = b[:, :w - s] - a[:, s:]
        else:
            d = b[:, -s:] - a[:, :w + s]
        errors.append(float(d.abs().mean()))
    k = min(range(len(errors)), key=errors.__getitem__)
    shift = float(k - max_shift)
    if 0 < k < len(errors) - 1:
        e0, e1, e2 = errors[k - 1], errors[k], errors[k + 1]
        curvature = e0 - 2 * e1 + e2
        if curvature > 1e-9:
            shift += 0.5 * (e0 - e2) / curvature
    return shift, errors[k]


def estimate_pan(frames_u8: torch.Tensor) -> List[float]:
    """Camera motion per frame in world units (positive = camera moving right), frame 0 = 0."""
    band = _pan_band(frames_u8)
    units_per_px = REF_W / band.shape[-1]
    max_shift = int(12 / units_per_px) + 2
    shifts = [0.0]
    for i in range(1, band.shape[0]):
        s, _ = _best_shift(band[i - 1], band[i], max_shift)
        shifts.append(s * units_per_px)
    return shifts


def classify_camera(shifts: Sequence[float], fps: int) -> List[str]:
    slow = abs(CAMERA_SPEED_UNITS_PER_S["pan_right_slow"]) / fps
    fast = abs(CAMERA_SPEED_UNITS_PER_S["pan_right_fast"]) / fps
    out = []
    for i in range(len(shifts)):
        v = shifts[i] if i > 0 else (shifts[1] if len(shifts) > 1 else 0.0)
        if abs(v) < slow * 0.5:
            out.append("static")
        else:
            speed = "slow" if abs(v) < (slow + fast) / 2 else "fast"
            out.append(f"pan_{'right' if v > 0 else 'left'}_{speed}")
    return out


# --- the measurements ------------------------------------------------------------------------
def measure(frames_u8: torch.Tensor, fps: int = 12, batch: int = 256) -> Dict[str, List]:
    """Every per-frame measurement: one list per axis plus "pan" (units per frame)."""
    features: Dict[str, List[torch.Tensor]] = {}
    for start in range(0, frames_u8.shape[0], batch):
        for axis, f in frame_features(frames_u8[start:start + batch]).items():
            features.setdefault(axis, []).append(f)
    merged = {axis: torch.cat(fs) for axis, fs in features.items()}
    result: Dict[str, List] = dict(classify(merged, fps))
    subjects, colours = [], []
    for start in range(0, frames_u8.shape[0], batch):
        part, times = frames_u8[start:start + batch], result["time"][start:start + batch]
        subjects += measure_subject(subject_evidence(part, times))
        colours += measure_colour(part, subjects[start:], times)
    result["subject"] = subjects
    result["colour"] = colours
    result["pan"] = estimate_pan(frames_u8)
    result["camera"] = classify_camera(result["pan"], fps)
    return result


def _adherence(measured: Dict[str, List], expected: List[Dict[str, str]], frames: Sequence[int]
               ) -> Dict[str, Optional[float]]:
    out: Dict[str, Optional[float]] = {}
    for axis in AXES:
        idx = [i for i in frames if axis != "colour" or expected[i]["subject"] != "none"]
        out[axis] = (sum(measured[axis][i] == expected[i][axis] for i in idx) / len(idx)
                     if idx else None)
    scored = [v for v in out.values() if v is not None]
    out["mean"] = sum(scored) / len(scored) if scored else None
    return out


def flicker(frames_u8: torch.Tensor, pan: Sequence[float]) -> List[float]:
    """Mean absolute difference (0-255) between consecutive frames after undoing the pan."""
    x = frames_u8.float()
    units_per_px = REF_W / x.shape[-1]
    out = []
    for i in range(1, x.shape[0]):
        s = int(round(pan[i] / units_per_px))
        w = x.shape[-1]
        if s >= 0:
            d = x[i, :, :, :w - s] - x[i - 1, :, :, s:]
        else:
            d = x[i, :, :, -s:] - x[i - 1, :, :, :w + s]
        out.append(float(d.abs().mean()))
    return out


def revisits(frames_u8: torch.Tensor, pan: Sequence[float], expected: List[Dict[str, str]],
             min_gap: int, max_pairs: int = 200) -> Dict[str, object]:
    """Similarity of frame pairs at the same camera position (see the module doc)."""
    track = [0.0]
    for v in pan[1:]:
        track.append(track[-1] + v)
    half_screen = REF_W / 2
    n = len(track)
    pairs = []
    for i in range(n):
        far = 0.0
        for j in range(i + 1, n):
            far = max(far, abs(track[j] - track[i]))
            if j - i >= min_gap and far >= half_screen and abs(track[j] - track[i]) < 2.0 and \
                    all(expected[i][a] == expected[j][a] for a in ("time", "biome", "weather")):
                pairs.append((i, j))
                break
    if len(pairs) > max_pairs:
        step = len(pairs) / max_pairs
        pairs = [pairs[int(k * step)] for k in range(max_pairs)]
    band = _pan_band(frames_u8)
    h_full = frames_u8.shape[-2]
    y0, y1 = int(56 / REF_H * h_full), int(118 / REF_H * h_full)
    land = frames_u8[:, :, y0:y1, :].float().mean(dim=1) / 255.0
    if land.shape[-1] > 256:
        land = F.interpolate(land.unsqueeze(1), size=(round(land.shape[-2] * 256 /
                             land.shape[-1]), 256), mode="area")[:, 0]
    maes, corrs = [], []
    for i, j in pairs:
        s, _ = _best_shift(band[i], band[j], 8)
        k = int(round(s))
        w = land.shape[-1]
        a = land[i, :, k:] if k >= 0 else land[i, :, :w + k]
        b = land[j, :, :w - k] if k >= 0 else land[j, :, -k:]
        maes.append(float((a - b).abs().mean()) * 255.0)
        a0, b0 = a - a.mean(), b - b.mean()
        corrs.append(float((a0 * b0).sum() / ((a0.norm() * b0.norm()).clamp(min=1e-6))))
    return {"pairs": len(pairs),
            "mean_abs_diff": sum(maes) / len(maes) if maes else None,
            "correlation": sum(corrs) / len(corrs) if corrs else None,
            "example_pairs": pairs[:5]}


def _stats(values: List[float]) -> Dict[str, Optional[float]]:
    if not values:
        return {"mean": None, "median": None, "p90": None}
    s = sorted(values)
    return {"mean": sum(s) / len(s), "median": s[len(s) // 2],
            "p90": s[min(len(s) - 1, int(0.9 * len(s)))]}


def evaluate(frames_u8: torch.Tensor, schedule: Sequence[Mapping[str, object]], fps: int = 12,
             seed: int = 0, exclude_frames: Optional[int] = None, max_latency: int = 48,
             block_frames: Optional[int] = None, revisit_gap: Optional[int] = None,
             reference_frames: int = 480, reference: bool = True) -> Dict[str, object]:
    n = frames_u8.shape[0]
    exclude = exclude_frames if exclude_frames is not None else round(1.5 * fps)
    expected, switches = expected_attributes(schedule, n)
    measured = measure(frames_u8, fps)
    excluded = set()
    for f in switches:
        excluded.update(range(f, min(n, f + exclude)))
    scored = [i for i in range(n) if i not in excluded]
    report: Dict[str, object] = {"frames": n, "width": frames_u8.shape[-1],
                                 "height": frames_u8.shape[-2], "fps": fps,
                                 "excluded_after_switch": exclude,
                                 "scored_frames": len(scored)}
    report["adherence"] = _adherence(measured, expected, scored)
    report["chance"] = {axis: 1.0 / len(values) for axis, values in AXES.items()}

    # Switch latency, per changed axis.
    latencies = []
    for f in switches:
        for axis in AXES:
            if expected[f][axis] == expected[f - 1][axis]:
                continue
            if axis == "colour" and expected[f]["subject"] == "none":
                continue
            target = expected[f][axis]
            latency = None
            for i in range(f, min(n - LATENCY_RUN + 1, f + max_latency + 1)):
                if all(measured[axis][i + r] == target for r in range(LATENCY_RUN)) and all(
                        expected[i + r][axis] == target for r in range(LATENCY_RUN)):
                    latency = i - f
                    break
            latencies.append({"frame": f, "axis": axis, "to": target, "latency_frames": latency})
    found = [s["latency_frames"] for s in latencies if s["latency_frames"] is not None]
    latency_report: Dict[str, object] = {"switches": len(latencies),
                                         "never_measured": len(latencies) - len(found),
                                         "frames": _stats([float(v) for v in found]),
                                         "per_switch": latencies}
    if block_frames:
        within = sum(1 for v in found if v <= 2 * block_frames)
        latency_report["block_frames"] = block_frames
        latency_report["fraction_within_2_blocks"] = within / len(latencies) if latencies else None
    report["switch_latency"] = latency_report

    # Flicker, against the world's own render of the same schedule.
    flick = flicker(frames_u8, measured["pan"])
    flicker_report: Dict[str, object] = {"mean": _stats(flick)["mean"],
                                         "p95": sorted(flick)[int(0.95 * (len(flick) - 1))]
                                         if flick else None}
    world_revisit = None
    if reference:
        m = min(n, reference_frames)
        world = World(seed, frames_u8.shape[-1], frames_u8.shape[-2], fps=fps)
        ref_frames, _ = world.render_schedule(schedule, m)
        ref_pan = estimate_pan(ref_frames)
        ref_flicker = flicker(ref_frames, ref_pan)
        own = _stats(ref_flicker)["mean"]
        flicker_report["world_mean"] = own
        flicker_report["world_frames"] = m
        first = _stats(flick[:m - 1])["mean"]
        flicker_report["ratio_to_world"] = (first / own) if own and first is not None else None
        world_revisit = revisits(ref_frames, ref_pan, expected[:m],
                                 revisit_gap or 2 * fps)
    report["flicker"] = flicker_report

    # Drift: first 10% vs last 10%.
    tenth = max(1, n // 10)
    first_idx = [i for i in scored if i < tenth]
    last_idx = [i for i in scored if i >= n - tenth]
    x = frames_u8.float() / 255.0

    def colour_stats(lo: int, hi: int) -> Dict[str, List[float]]:
        part = x[lo:hi]
        return {"mean_rgb": [float(v) for v in part.mean(dim=(0, 2, 3))],
                "std_luminance": float(part.mean(dim=1).std())}

    first_stats, last_stats = colour_stats(0, tenth), colour_stats(n - tenth, n)
    first_adh, last_adh = _adherence(measured, expected, first_idx), \
        _adherence(measured, expected, last_idx)
    report["drift"] = {
        "first_frames": [0, tenth], "last_frames": [n - tenth, n],
        "adherence_first": first_adh, "adherence_last": last_adh,
        "adherence_mean_change": (last_adh["mean"] - first_adh["mean"])
        if first_adh["mean"] is not None and last_adh["mean"] is not None else None,
        "colour_first": first_stats, "colour_last": last_stats,
        "mean_rgb_change": max(abs(a - b) for a, b in zip(first_stats["mean_rgb"],
                                                          last_stats["mean_rgb"])),
    }

    report["revisit"] = revisits(frames_u8, measured["pan"], expected, revisit_gap or 2 * fps)
    if world_revisit is not None:
        report["revisit"]["world"] = world_revisit
    report["per_frame"] = {axis: measured[axis] for axis in list(AXES)}
    report["per_frame"]["pan_units"] = [round(v, 3) for v in measured["pan"]]
    return report


# --- validation ------------------------------------------------------------------------------
def random_schedule(frames: int, every: int, seed: int) -> List[Dict[str, object]]:
    """Prompts every ``every`` frames, each a paraphrase of a random full combination."""
    from world_vocab import all_combinations, paraphrases
    rng = random.Random(seed)
    combos = all_combinations()
    out = []
    for k, frame in enumerate(range(0, frames, every)):
        attrs = rng.choice(combos)
        out.append({"frame": frame, "prompt": paraphrases(attrs, 1, seed=seed * 1000 + k)[0]})
    return out


def validate(frames: int = 480, every: int = 48, seed: int = 5, width: int = 256,
             height: int = 144, mismatched: int = 8) -> Dict[str, object]:
    """Ground truth scored against its own schedule, then against ``mismatched`` unrelated
    schedules (an independent random combination per prompt, every ``every`` frames)."""
    # Random prompts for the first three quarters, then a quick pan out and back over one
    # scene (for revisit consistency).
    back = frames - frames // 4
    truth_schedule = random_schedule(back, every, seed) + [
        {"frame": back, "prompt": "red balloons over a city skyline at dusk, quick pan right"},
        {"frame": back + frames // 8, "prompt": "red balloons over the city at dusk, "
                                                 "quick pan left"}]
    world = World(seed, width, height)
    video, _ = world.render_schedule(truth_schedule, frames)
    truth = evaluate(video, truth_schedule, seed=seed)
    # Several unrelated schedules, so that the mismatched score is not one lucky draw.
    measured = measure(video)
    exclude = round(1.5 * world.fps)
    truth_expected, _ = expected_attributes(truth_schedule, frames)
    truth_labels = {axis: [e[axis] for e in truth_expected] for axis in AXES}
    wrong, agreement = [], []
    for k in range(mismatched):
        schedule = random_schedule(frames, every, seed + 1000 + k)
        expected, switches = expected_attributes(schedule, frames)
        excluded = {i for f in switches for i in range(f, min(frames, f + exclude))}
        scored = [i for i in range(frames) if i not in excluded]
        wrong.append(_adherence(measured, expected, scored))
        # The chance level of this very draw: how often the two schedules' prompts agree.
        agreement.append(_adherence(truth_labels, expected, scored))
    wrong_mean = {axis: sum(w[axis] for w in wrong) / len(wrong) for axis in wrong[0]}
    agreement_mean = {axis: sum(a[axis] for a in agreement) / len(agreement)
                      for axis in agreement[0]}
    return {"frames": frames, "every": every, "seed": seed, "size": [width, height],
            "mismatched_schedules": mismatched,
            "truth_adherence": truth["adherence"], "mismatched_adherence": wrong_mean,
            "mismatched_prompt_agreement": agreement_mean,
            "mismatched_adherence_range": {axis: [min(w[axis] for w in wrong),
                                                  max(w[axis] for w in wrong)]
                                           for axis in wrong[0]},
            "chance": truth["chance"], "truth_switch_latency": {
                k: v for k, v in truth["switch_latency"].items() if k != "per_switch"},
            "truth_flicker": truth["flicker"], "truth_revisit": truth["revisit"],
            "truth_drift_adherence_change": truth["drift"]["adherence_mean_change"]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    global CALIBRATION_FRAMES_PER_COMBO
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=Path, help="directory of PNG frames")
    parser.add_argument("--schedule", type=Path, help="schedule JSON (strand-cli format)")
    parser.add_argument("--json", type=Path, help="write the report here (else stdout)")
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="seed of the world reference render")
    parser.add_argument("--exclude-frames", type=int, default=None,
                        help="frames after a prompt change left out of adherence (1.5 s)")
    parser.add_argument("--max-latency", type=int, default=48)
    parser.add_argument("--block-frames", type=int, default=None,
                        help="frames per model block, to report latency in blocks")
    parser.add_argument("--revisit-gap", type=int, default=None)
    parser.add_argument("--reference-frames", type=int, default=480,
                        help="frames of the world's own render used for reference numbers")
    parser.add_argument("--per-frame", action="store_true", help="keep per-frame measurements")
    parser.add_argument("--validate", action="store_true",
                        help="score world.py ground truth against its own and a mismatched schedule")
    parser.add_argument("--validate-frames", type=int, default=480)
    parser.add_argument("--calibration-per-combo", type=int, default=CALIBRATION_FRAMES_PER_COMBO,
                        help="calibration frames per time x biome x weather x subject")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    CALIBRATION_FRAMES_PER_COMBO = max(1, args.calibration_per_combo)
    if args.validate:
        report = validate(frames=args.validate_frames)
    else:
        if args.frames is None or args.schedule is None:
            parser.error("--frames and --schedule are required (or --validate)")
        schedule = world_module.load_schedule(args.schedule)
        report = evaluate(load_frames(args.frames), schedule, fps=args.fps, seed=args.seed,
                          exclude_frames=args.exclude_frames, max_latency=args.max_latency,
                          block_frames=args.block_frames, revisit_gap=args.revisit_gap,
                          reference_frames=args.reference_frames)
        if not args.per_frame:
            report.pop("per_frame", None)
            report["switch_latency"].pop("per_switch", None)
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

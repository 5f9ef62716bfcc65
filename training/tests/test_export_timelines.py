"""Timeline export checked by independent readers.

The C++ writers (core/src/export_timeline.cpp) are driven through tests/tools/export_sample.cpp
(`strand-export-sample DIR`, found at $STRAND_BUILD_DIR/bin, default <repo>/build/bin; the module
is skipped when it is not built). The sample timeline is restated here (EXPECTED_*), so every
check compares the files against values this test knows on its own:

- .otio: loaded by the real OpenTimelineIO library (skipped if `opentimelineio` is not
  installed); clips, gap, source / available ranges, media URLs and markers (mapped to timeline
  frames) match; OTIO's own adapters (otio_json, and otioz when present) round-trip it.
- .fcpxml: well-formed per xmllint (skipped if absent); every time is a whole number of frames.
- .edl: parsed back; source and record durations agree and match the expected ranges.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest

BUILD_DIR = Path(os.environ.get("STRAND_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))
SAMPLE_TOOL = BUILD_DIR / "bin" / "strand-export-sample"

pytestmark = pytest.mark.skipif(not SAMPLE_TOOL.is_file(), reason=f"{SAMPLE_TOOL} not built")

RATE = Fraction(24000, 1001)
# (name, media file, media frames, in, out (exclusive), gap before) -- as in export_sample.cpp.
EXPECTED_CLIPS = [
    ("main", "main.mov", 240, 10, 130, 0),
    ("branch b", "branch b.mov", 96, 0, 48, 12),
    ("main again", "main.mov", 240, 200, 240, 0),
]
# (timeline frame, name, OTIO colour)
EXPECTED_MARKERS = [
    (0, "prompt: a red fox", "CYAN"),
    (30, "prompt: snow", "CYAN"),
    (125, "gap note", "GREEN"),
    (140, "branch b", "ORANGE"),
    (200, "main again", "GREEN"),
]
TIMELINE_FRAMES = sum(c[5] + c[4] - c[3] for c in EXPECTED_CLIPS)


def clip_timeline_starts():
    starts, position = [], 0
    for clip in EXPECTED_CLIPS:
        position += clip[5]
        starts.append(position)
        position += clip[4] - clip[3]
    return starts


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("export-sample")
    subprocess.run([str(SAMPLE_TOOL), str(out)], check=True, timeout=30)
    # Stand-in media so that bundling adapters (otioz) find the files they reference.
    (out / "media").mkdir()
    for _, media, *_ in EXPECTED_CLIPS:
        (out / "media" / media).write_bytes(b"not really a movie")
    return out


# ---- OpenTimelineIO

def test_otio_loads_with_exact_clips_ranges_and_markers(sample):
    otio = pytest.importorskip("opentimelineio")
    timeline = otio.adapters.read_from_file(str(sample / "sample.otio"))
    assert timeline.global_start_time.value == 0
    assert len(timeline.tracks) == 1
    track = timeline.tracks[0]
    assert track.kind == otio.schema.TrackKind.Video
    clips = [item for item in track if isinstance(item, otio.schema.Clip)]
    gaps = [item for item in track if isinstance(item, otio.schema.Gap)]
    assert len(clips) == len(EXPECTED_CLIPS)
    assert [g.source_range.duration.value for g in gaps] == [c[5] for c in EXPECTED_CLIPS if c[5]]
    assert timeline.duration().value == TIMELINE_FRAMES
    assert Fraction(timeline.duration().rate).limit_denominator(1001) == RATE

    markers_found = []
    for clip, expected, start in zip(clips, EXPECTED_CLIPS, clip_timeline_starts()):
        name, media, media_frames, first, end, _ = expected
        assert clip.name == name
        assert clip.source_range.start_time.value == first
        assert clip.source_range.duration.value == end - first
        assert clip.range_in_parent().start_time.value == start
        ref = clip.media_reference
        assert isinstance(ref, otio.schema.ExternalReference)
        assert ref.target_url == (sample / "media" / media).as_uri()
        assert ref.available_range.start_time.value == 0  # media timecode 00:00:00:00
        assert ref.available_range.duration.value == media_frames
        for marker in clip.markers:
            offset = marker.marked_range.start_time.value - first
            markers_found.append((start + offset, marker.name, marker.color))
    for marker in timeline.tracks.markers:  # markers inside gaps sit on the stack
        markers_found.append((marker.marked_range.start_time.value, marker.name, marker.color))
    assert sorted(markers_found) == sorted(EXPECTED_MARKERS)


def test_otio_adapters_round_trip(sample, tmp_path):
    otio = pytest.importorskip("opentimelineio")
    timeline = otio.adapters.read_from_file(str(sample / "sample.otio"))
    again = otio.adapters.read_from_string(otio.adapters.write_to_string(timeline, "otio_json"),
                                           "otio_json")
    assert again.is_equivalent_to(timeline)
    if "otioz" in otio.adapters.available_adapter_names():
        bundle = tmp_path / "sample.otioz"
        otio.adapters.write_to_file(timeline, str(bundle))
        unbundled = otio.adapters.read_from_file(str(bundle))
        assert len(list(unbundled.find_clips())) == len(EXPECTED_CLIPS)
        for a, b in zip(unbundled.find_clips(), timeline.find_clips()):
            assert a.source_range == b.source_range
            assert a.name == b.name


# ---- FCPXML

def seconds(value: str) -> Fraction:
    assert value.endswith("s"), value
    return Fraction(value[:-1])


def test_fcpxml_well_formed_and_frame_aligned(sample):
    path = sample / "sample.fcpxml"
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint (libxml2-utils) not installed")
    subprocess.run(["xmllint", "--noout", str(path)], check=True, timeout=30)
    root = ET.parse(path).getroot()
    assert root.tag == "fcpxml" and root.get("version") == "1.9"
    frame = seconds(root.find("resources/format").get("frameDuration"))
    assert frame == 1 / RATE
    checked = 0
    for element in root.iter():
        for attribute in ("offset", "start", "duration", "tcStart"):
            if element.get(attribute) is not None:
                frames = seconds(element.get(attribute)) / frame
                assert frames.denominator == 1, (element.tag, attribute, element.get(attribute))
                checked += 1
    assert checked > 10
    spine = root.find("library/event/project/sequence/spine")
    clips = spine.findall("asset-clip")
    assert len(clips) == len(EXPECTED_CLIPS)
    for clip, expected, start in zip(clips, EXPECTED_CLIPS, clip_timeline_starts()):
        assert clip.get("name") == expected[0]
        assert seconds(clip.get("offset")) / frame == start
        assert seconds(clip.get("start")) / frame == expected[3]
        assert seconds(clip.get("duration")) / frame == expected[4] - expected[3]
    assets = {a.get("id"): a for a in root.iter("asset")}
    assert len(assets) == 2  # main.mov is one asset used twice
    for asset in assets.values():
        assert asset.find("media-rep").get("src").startswith("file:///")
    assert seconds(root.find("library/event/project/sequence").get("duration")) / frame == TIMELINE_FRAMES
    assert sorted(m.get("value") for m in root.iter("marker")) == sorted(m[1] for m in EXPECTED_MARKERS)


# ---- CMX3600 EDL

EVENT = re.compile(r"^(\d{3})  (\S{1,8}) +V +C +"
                   r"(\d\d:\d\d:\d\d:\d\d) (\d\d:\d\d:\d\d:\d\d) (\d\d:\d\d:\d\d:\d\d) (\d\d:\d\d:\d\d:\d\d)$")


def tc_frames(tc: str, base: int = 24) -> int:  # 23.976 NDF counts 24 frames a second
    h, m, s, f = (int(x) for x in tc.split(":"))
    return ((h * 60 + m) * 60 + s) * base + f


def test_edl_parses_with_consistent_durations(sample):
    lines = (sample / "sample.edl").read_text().splitlines()
    assert lines[0].startswith("TITLE: ")
    assert lines[1] == "FCM: NON-DROP FRAME"
    events = [EVENT.match(line) for line in lines if re.match(r"^\d{3} ", line)]
    assert all(events)
    assert len(events) == len(EXPECTED_CLIPS)
    for event, expected, start in zip(events, EXPECTED_CLIPS, clip_timeline_starts()):
        src_in, src_out, rec_in, rec_out = (tc_frames(event.group(i)) for i in range(3, 7))
        assert src_out - src_in == rec_out - rec_in  # exclusive out points on both sides
        assert (src_in, src_out) == (expected[3], expected[4])
        assert rec_in == start
    assert events[0].group(2) == events[2].group(2)  # same media, same reel
    assert len({e.group(2) for e in events}) == 2
    locators = [line for line in lines if line.startswith("* LOC: ")]
    assert sorted(tc_frames(l.split()[2]) for l in locators) == [m[0] for m in EXPECTED_MARKERS]

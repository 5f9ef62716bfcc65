"""Attribute axes, vocabulary and prompt parser of the procedural world (training/world.py).

The world is described by six attribute axes, each taking one value from a small closed set:

    time     dawn, day, dusk, night
    biome    forest, desert, snow, city, coast
    weather  clear, rain, snow, fog
    camera   static, pan_left_slow, pan_left_fast, pan_right_slow, pan_right_fast
    subject  none, birds, balloons, cars
    colour   red, orange, yellow, green, blue, purple, white   (colour of the subject)

Artists write free text, so ``parse_prompt`` maps words and short phrases (with synonyms) onto
these values and ignores everything it does not know. Axes a prompt does not mention keep the
previous prompt's values (or the defaults for the first prompt): a director who says "now it
rains" expects the forest and the birds to stay. ``paraphrases`` writes varied natural sentences
for an attribute combination so that a model conditioned on a sentence encoder learns meaning,
not keywords. ``all_words`` lists every word the parser and the generator use, for the model's
vocabulary.
"""

from __future__ import annotations

import random
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

AXES: Dict[str, Tuple[str, ...]] = {
    "time": ("dawn", "day", "dusk", "night"),
    "biome": ("forest", "desert", "snow", "city", "coast"),
    "weather": ("clear", "rain", "snow", "fog"),
    "camera": ("static", "pan_left_slow", "pan_left_fast", "pan_right_slow", "pan_right_fast"),
    "subject": ("none", "birds", "balloons", "cars"),
    "colour": ("red", "orange", "yellow", "green", "blue", "purple", "white"),
}
AXIS_NAMES: Tuple[str, ...] = tuple(AXES)

DEFAULTS: Dict[str, str] = {
    "time": "day",
    "biome": "forest",
    "weather": "clear",
    "camera": "static",
    "subject": "none",
    "colour": "red",
}

Attributes = Dict[str, str]

# --- vocabulary ------------------------------------------------------------------------------
# Each entry maps a word or a phrase (space separated, matched on whole words, longest first) to
# the axis values it implies. A word may set several axes ("sunny" is daytime and clear sky).
# Camera words are not here: direction, speed and motion words combine (see _parse_camera).

_PHRASES: Dict[str, Dict[str, str]] = {}


def _add(words: str, **values: str) -> None:
    for word in words.split(","):
        word = word.strip()
        if word:
            _PHRASES[word] = dict(values)


# time of day
_add("dawn, sunrise, daybreak, first light, early morning, morning, sunup", time="dawn")
_add("day, daytime, midday, noon, afternoon, daylight, broad daylight, high noon", time="day")
_add("dusk, twilight, sunset, sundown, evening, golden hour, nightfall, gloaming", time="dusk")
_add("night, nighttime, midnight, moonlit, moonlight, starry, starlit, dark night", time="night")
_add("sunny", time="day", weather="clear")
# biomes
_add("forest, forests, woods, woodland, woodlands, pines, pine, trees, tree, grove, jungle, "
     "taiga, evergreen, evergreens", biome="forest")
_add("desert, deserts, dunes, dune, sand dunes, sahara, arid, cactus, cacti, badlands",
     biome="desert")
_add("snowy, frozen, icy, ice, arctic, alpine, glacier, glaciers, tundra, winter, wintry, "
     "snowfield, snow covered, snow-covered, snowcapped, snow-capped", biome="snow")
_add("city, cities, town, urban, skyline, buildings, downtown, metropolis, skyscrapers, "
     "streets, street", biome="city")
_add("coast, coastline, coastal, beach, ocean, sea, seaside, shore, shoreline, waves, bay, "
     "harbour, harbor", biome="coast")
# weather
_add("clear, clear sky, clear skies, cloudless, fair weather, bright", weather="clear")
_add("rain, rainy, raining, rainfall, drizzle, downpour, showers, storm, stormy, thunderstorm, "
     "wet", weather="rain")
_add("snowing, snowfall, snowflakes, snowflake, blizzard, flurries, falling snow, "
     "snow falling, snowstorm", weather="snow")
_add("fog, foggy, mist, misty, haze, hazy, murky, overcast", weather="fog")
# subjects
_add("birds, bird, flock, seagulls, gulls, crows, geese, swallows, sparrows", subject="birds")
_add("balloons, balloon, hot air balloon, hot air balloons, hot-air balloons, hot-air balloon",
     subject="balloons")
_add("cars, car, traffic, vehicles, vehicle, trucks, truck, taxis, taxi", subject="cars")
_add("empty, deserted, nobody, no one, nothing moving, no subject, lonely", subject="none")
# colours (only applied to a subject: see _parse_colour)
_add("red, crimson, scarlet, ruby", colour="red")
_add("orange, amber, tangerine", colour="orange")
_add("yellow, lemon, gold", colour="yellow")
_add("green, emerald, lime", colour="green")
_add("blue, azure, navy, cobalt", colour="blue")
_add("purple, violet, magenta, lilac", colour="purple")
_add("white, ivory, snow-white", colour="white")

_COLOUR_WORDS = {w for w, v in _PHRASES.items() if "colour" in v}
_SUBJECT_WORDS = {w for w, v in _PHRASES.items() if v.get("subject", "none") != "none"}

# camera words
# Motion words that also describe subjects ("birds gliding", "cars moving") are left out.
_PAN_WORDS = {"pan", "pans", "panning", "panned", "tracking", "track", "tracks", "scrolling",
              "dolly", "panorama"}
_LEFT_WORDS = {"left", "leftward", "leftwards", "westward"}
_RIGHT_WORDS = {"right", "rightward", "rightwards", "eastward"}
_SLOW_WORDS = {"slow", "slowly", "gentle", "gently", "lazy", "lazily", "calm", "leisurely",
               "steady", "steadily"}
_FAST_WORDS = {"fast", "quick", "quickly", "rapid", "rapidly", "swift", "swiftly", "speeding",
               "racing", "whip"}
_STATIC_WORDS = {"static", "still", "stationary", "fixed", "locked", "tripod", "motionless",
                 "steady shot", "unmoving"}
_CAMERA_WORDS = _PAN_WORDS | _LEFT_WORDS | _RIGHT_WORDS | _SLOW_WORDS | _FAST_WORDS | _STATIC_WORDS

_MAX_PHRASE_WORDS = max(len(p.split()) for p in _PHRASES)
_TOKEN_RE = re.compile(r"[a-z]+(?:-[a-z]+)*")


def tokenize(text: str) -> List[str]:
    """Lower-case words; hyphenated words stay whole, other punctuation separates."""
    return _TOKEN_RE.findall(text.lower())


def _match_phrases(tokens: Sequence[str]) -> List[Tuple[int, int, str]]:
    """Greedy longest-first phrase matches as (start, end, phrase), left to right."""
    matches = []
    i = 0
    while i < len(tokens):
        for n in range(min(_MAX_PHRASE_WORDS, len(tokens) - i), 0, -1):
            phrase = " ".join(tokens[i:i + n])
            if phrase in _PHRASES:
                matches.append((i, i + n, phrase))
                i += n
                break
        else:
            i += 1
    return matches


def _parse_camera(tokens: Sequence[str], previous: str) -> Optional[str]:
    words = set(tokens)
    if " ".join(tokens).find("steady shot") >= 0 or words & (_STATIC_WORDS - {"steady shot"}):
        if not words & (_LEFT_WORDS | _RIGHT_WORDS):
            return "static"
    has_left, has_right = bool(words & _LEFT_WORDS), bool(words & _RIGHT_WORDS)
    has_pan = bool(words & _PAN_WORDS)
    if not (has_left or has_right or has_pan):
        # "slow"/"fast" alone are too common to mean the camera ("fast cars").
        return None
    if has_left == has_right:
        # Panning without a direction: keep the current direction, right when static.
        direction = "left" if previous.startswith("pan_left") else "right"
    else:
        direction = "left" if has_left else "right"
    fast, slow = bool(words & _FAST_WORDS), bool(words & _SLOW_WORDS)
    if fast == slow:
        speed = previous.rsplit("_", 1)[1] if previous.startswith("pan_") else "slow"
    else:
        speed = "fast" if fast else "slow"
    return f"pan_{direction}_{speed}"


def parse_prompt(text: str, previous: Optional[Mapping[str, str]] = None) -> Attributes:
    """Free text -> attributes. Unknown words are ignored; unmentioned axes keep ``previous``.

    Rules beyond plain word lookup:
    - a colour word counts only when a subject word follows within three words ("a red
      balloon", "red and blue cars" takes the first), so "green forest" is not a green subject;
    - "snow" alone is the snow biome unless a falling-snow phrase names the weather;
    - when several words of one axis appear, the last one wins ("dawn turning to dusk" is dusk).
    """
    attrs: Attributes = dict(DEFAULTS if previous is None else previous)
    tokens = tokenize(text)
    matches = _match_phrases(tokens)
    colour_from_subject: Optional[str] = None
    for index, (start, end, phrase) in enumerate(matches):
        values = _PHRASES[phrase]
        if "colour" in values:
            # A colour names the subject only if a subject word comes soon after it.
            for later_start, _, later in matches[index + 1:]:
                if later_start - end > 2:
                    break
                if later in _SUBJECT_WORDS:
                    colour_from_subject = colour_from_subject or values["colour"]
                    break
            continue
        attrs.update(values)
    # A bare "snow" is ambiguous: biome unless the weather is already snowing in this prompt.
    if "snow" in tokens and not any("weather" in _PHRASES[m[2]] and
                                    _PHRASES[m[2]]["weather"] == "snow" for m in matches):
        attrs["biome"] = "snow"
    if colour_from_subject is not None:
        attrs["colour"] = colour_from_subject
    camera = _parse_camera(tokens, attrs["camera"])
    if camera is not None:
        attrs["camera"] = camera
    return attrs


def parse_schedule(schedule: Iterable[Mapping[str, object]]) -> List[Tuple[int, Attributes]]:
    """Schedule entries {"frame", "prompt"} sorted by frame -> (frame, attributes), each prompt
    parsed on top of the previous one's attributes."""
    entries = sorted(schedule, key=lambda e: int(e["frame"]))
    parsed: List[Tuple[int, Attributes]] = []
    previous: Optional[Attributes] = None
    for entry in entries:
        previous = parse_prompt(str(entry["prompt"]), previous)
        parsed.append((int(entry["frame"]), previous))
    return parsed


# --- paraphrase generator --------------------------------------------------------------------
# Natural phrases per value; each must parse back to its value (tests/test_world.py checks).
_TIME_PHRASES = {
    "dawn": ["at dawn", "at sunrise", "at daybreak", "in the early morning", "at first light"],
    "day": ["in broad daylight", "at midday", "in the afternoon", "at noon", "in the daytime"],
    "dusk": ["at dusk", "at sunset", "in the twilight", "at golden hour", "in the evening"],
    "night": ["at night", "at midnight", "under a starry sky", "by moonlight", "in the nighttime"],
}
_BIOME_PHRASES = {
    "forest": ["a pine forest", "the woods", "a dense woodland", "tall pines", "an evergreen grove"],
    "desert": ["a desert", "rolling sand dunes", "an arid desert", "the dunes", "a cactus desert"],
    "snow": ["snowy mountains", "a frozen valley", "icy arctic hills", "an alpine snowfield",
             "a wintry landscape"],
    "city": ["a city skyline", "downtown streets", "an urban skyline", "tall buildings",
             "a busy town"],
    "coast": ["the coast", "a sandy beach", "the ocean shore", "the seaside", "a rocky coastline"],
}
_WEATHER_PHRASES = {
    "clear": ["under clear skies", "with a cloudless sky", "in fair weather", ""],
    "rain": ["in the rain", "during a downpour", "in a thunderstorm", "with rain falling",
             "in drizzle"],
    "snow": ["with snow falling", "in a blizzard", "as snowflakes fall", "during a snowfall"],
    "fog": ["in thick fog", "in the mist", "under a hazy sky", "through the fog", "in misty air"],
}
_SUBJECT_PHRASES = {
    "none": ["", "with nobody around", "empty and quiet"],
    "birds": ["{c} birds flying", "a flock of {c} birds", "{c} birds gliding by", "{c} birds"],
    "balloons": ["{c} hot air balloons drifting", "{c} balloons floating", "a few {c} balloons"],
    "cars": ["{c} cars driving by", "{c} cars on the road", "traffic of {c} cars", "{c} cars"],
}
_COLOUR_PHRASES = {
    "red": ["red", "crimson", "scarlet"], "orange": ["orange", "amber"],
    "yellow": ["yellow", "lemon"], "green": ["green", "emerald"],
    "blue": ["blue", "azure", "cobalt"], "purple": ["purple", "violet"], "white": ["white", "ivory"],
}
_CAMERA_PHRASES = {
    "static": ["static camera", "a still shot", "tripod shot", "fixed camera"],
    "pan_left_slow": ["camera slowly panning left", "a slow pan to the left",
                      "gently tracking left"],
    "pan_left_fast": ["camera panning fast to the left", "a quick pan left",
                      "rapidly tracking left"],
    "pan_right_slow": ["camera slowly panning right", "a slow pan to the right",
                       "gently tracking right"],
    "pan_right_fast": ["camera panning fast to the right", "a quick pan right",
                       "rapidly tracking right"],
}
_FILLERS = ["", "", "", "a peaceful view of", "wide shot of", "a painting of", "cinematic shot of",
            "an illustration of", "4k footage of", "a scene of"]
_LINKS = ["over", "above", "across", "in front of", "near"]


def paraphrases(attrs: Mapping[str, str], count: int, seed: int = 0) -> List[str]:
    """``count`` varied sentences describing ``attrs`` (all axes), deterministic per seed.

    Every sentence parses back to ``attrs`` from the defaults, except that a static camera and
    a clear sky may be left unsaid (they are defaults) and the colour is unsaid without subject.
    """
    rng = random.Random(f"{seed}:{sorted(attrs.items())}")
    out = []
    for _ in range(count):
        biome = rng.choice(_BIOME_PHRASES[attrs["biome"]])
        time = rng.choice(_TIME_PHRASES[attrs["time"]])
        weather = rng.choice(_WEATHER_PHRASES[attrs["weather"]])
        subject = rng.choice(_SUBJECT_PHRASES[attrs["subject"]])
        subject = subject.format(c=rng.choice(_COLOUR_PHRASES[attrs["colour"]]))
        camera = rng.choice(_CAMERA_PHRASES[attrs["camera"]])
        if attrs["camera"] == "static" and rng.random() < 0.5:
            camera = ""
        filler = rng.choice(_FILLERS)
        if subject and attrs["subject"] != "none" and rng.random() < 0.6:
            scene = f"{subject} {rng.choice(_LINKS)} {biome}"
            rest = [time, weather]
        else:
            scene = biome
            if subject and attrs["subject"] != "none":
                subject = "with " + subject
            rest = [time, weather, subject]
        rng.shuffle(rest)
        parts = [p for p in [filler, scene] + rest if p]
        sentence = " ".join(parts)
        if camera:
            sentence += rng.choice([", ", ". ", "; "]) + camera
        out.append(sentence[0].upper() + sentence[1:])
    return out


def all_combinations() -> List[Attributes]:
    """Every attribute combination (the colour axis only with a subject)."""
    combos: List[Attributes] = [{}]
    for axis, values in AXES.items():
        combos = [dict(c, **{axis: v}) for c in combos for v in values]
    return [c for c in combos if c["subject"] != "none" or c["colour"] == DEFAULTS["colour"]]


def all_words() -> List[str]:
    """Every word the parser knows or the generator writes, sorted, for a model vocabulary."""
    words = set()
    for phrase in _PHRASES:
        words.update(tokenize(phrase))
        words.update(phrase.split())
    words.update(_CAMERA_WORDS)
    tables = [_TIME_PHRASES, _BIOME_PHRASES, _WEATHER_PHRASES, _SUBJECT_PHRASES, _COLOUR_PHRASES,
              _CAMERA_PHRASES]
    for table in tables:
        for phrases in table.values():
            for phrase in phrases:
                words.update(tokenize(phrase.replace("{c}", "")))
    for phrase in _FILLERS + _LINKS + ["morning", "afternoon", "evening", "night", "the", "to"]:
        words.update(tokenize(phrase))
    return sorted(w for w in words if w)


def describe(attrs: Mapping[str, str]) -> str:
    """A short canonical prompt for ``attrs``, naming every axis (parses back to ``attrs``)."""
    subject = "no subject" if attrs["subject"] == "none" else \
        f"{attrs['colour']} {attrs['subject']}"
    camera = "static camera" if attrs["camera"] == "static" else \
        "camera panning " + " ".join(attrs["camera"].split("_")[1:])
    weather = {"clear": "clear sky", "rain": "rain", "snow": "snowfall", "fog": "fog"}
    biome = {"snow": "snowfield"}.get(attrs["biome"], attrs["biome"])
    return (f"{subject}, {biome} at {attrs['time']}, {weather[attrs['weather']]}, "
            f"{camera}")

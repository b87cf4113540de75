"""The synthetic video: its spec, the slot timeline, the event log, and how an event is drawn.

A video is a row of slots: `event_seconds` long each, separated by blank gaps drawn between gap_min and
gap_max seconds (irregular, so no sampling rate lines up with the slots: a fixed grid let uniform
sampling land in the gaps every time). An event fills a slot; empty slots and gaps show the plain
background, so two events never touch and "how many times" always has a clear answer.

Two event kinds, both large and static while on screen (perception must be easy; see
docs/synthetic-benchmark.md):
- shape: one big filled shape (circle, square, triangle, diamond, star) in one of six colours, with a
  word in big black letters under it.
- code: a three-character code (letter, digit, letter) in big coloured letters, alone on screen.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (240, 240, 240)
TEXT_BLACK = (20, 20, 20)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (225, 180, 0),
    "purple": (140, 40, 180),
    "orange": (245, 125, 0),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star")
WORDS = (
    "APPLE", "BEAR", "BELL", "BIRD", "BOAT", "BOOK", "CAKE", "CAT", "CHAIR", "CLOCK", "CLOUD", "CORN",
    "CROWN", "DOG", "DRUM", "DUCK", "FISH", "FLAG", "FROG", "GOAT", "HAT", "HORSE", "HOUSE", "KEY",
    "KITE", "LAMP", "LEAF", "LION", "MILK", "MOON", "MOUSE", "NOSE", "PEAR", "PIANO", "PIG", "PLANE",
    "RING", "ROSE", "SHIP", "SHOE", "SNAKE", "SOCK", "SPOON", "STONE", "SUN", "TABLE", "TIGER", "TRAIN",
    "TREE", "VASE", "WHALE", "WOLF",
)  # fmt: skip
CODE_LETTERS = "ACEFHKLMNPRTUVWXYZ"  # no I/O/S/B/D/G/Q/J: nothing that reads as a digit or a near twin
CODE_DIGITS = "2345679"


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines one synthetic video (events, questions and pixels)."""

    seed: int = 0
    base_seconds: float = 240.0  # the 1x length (4 clips x 16 frames: a frame every 3.75 s); `length_factor` scales it
    length_factor: float = 1.0  # duration = base_seconds * length_factor
    fps: float = 2.0
    width: int = 224
    height: int = 224
    event_seconds: float = 8.0  # time an event stays on screen (>= 2x the frame spacing of the reading plan)
    gap_min: float = 1.0  # blank seconds between two slots, drawn uniformly in [gap_min, gap_max]
    gap_max: float = 3.0  # (rounded to 0.5 s); mean slot period event_seconds + 2 s = 10 s
    density: float = 0.6  # share of the slots left after the question events that get a filler event
    code_share: float = 0.25  # share of filler events that are codes (the rest are shapes)
    questions_per_family: int = 1

    @property
    def duration(self) -> float:
        return self.base_seconds * self.length_factor

    @property
    def frame_count(self) -> int:
        return round(self.duration * self.fps)


@dataclass
class Event:
    start: float  # seconds, on screen from start (inclusive) ...
    end: float  # ... to end (exclusive)
    kind: str  # "shape" or "code"
    colour: str
    shape: str | None = None  # shape events
    word: str | None = None  # shape events: the word under the shape
    code: str | None = None  # code events
    position: str = "center"
    role: str = "filler"  # which question planted it ("needle", "count", ...), or "filler"

    def as_dict(self) -> dict:
        d = {"start": self.start, "end": self.end, "kind": self.kind, "colour": self.colour}
        for key in ("shape", "word", "code"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        d["position"], d["role"] = self.position, self.role
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Event:
        return cls(**{k: d.get(k, v) for k, v in _EVENT_DEFAULTS.items()})

    def describe(self) -> str:
        """The event in words, e.g. for oracle memories: 'a red circle with the word APPLE'."""
        if self.kind == "code":
            return f"the code {self.code} in {self.colour}"
        return f"a {self.colour} {self.shape} with the word {self.word}"

    def look(self) -> tuple:
        """What the event looks like (frames with the same look are identical)."""
        return (self.kind, self.colour, self.shape, self.word, self.code, self.position)


_EVENT_DEFAULTS = {"start": 0.0, "end": 0.0, "kind": "shape", "colour": "red", "shape": None, "word": None,
                   "code": None, "position": "center", "role": "filler"}  # fmt: skip


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    raise ValueError(f"unknown shape {shape!r}")


def _fit(text: str, max_height: float, max_width: float) -> int:
    """The largest font size (at most max_height pixels) at which `text` fits in max_width."""
    size = max(8, int(max_height))
    while size > 8 and _font(size).getlength(text) * 1.1 > max_width:  # 1.1: room for the stroke
        size -= 1
    return size


@lru_cache(maxsize=256)
def _render_look(look: tuple | None, width: int, height: int) -> np.ndarray:
    img = Image.new("RGB", (width, height), BACKGROUND)
    if look is not None:
        kind, colour, shape, word, code, _position = look
        draw = ImageDraw.Draw(img)
        side = min(width, height)
        if kind == "shape":
            # The shape fills the upper ~65% of the frame, the word sits in big letters under it.
            cx, cy, r = width / 2, height * 0.37, side * 0.3
            if shape == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=COLOURS[colour])
            else:
                draw.polygon(_shape_points(shape, cx, cy, r), fill=COLOURS[colour])
            size = _fit(word, 0.17 * height, 0.9 * width)
            draw.text((width / 2, height * 0.84), word, fill=TEXT_BLACK, font=_font(size), anchor="mm",
                      stroke_width=max(1, size // 16), stroke_fill=TEXT_BLACK)  # fmt: skip
        elif kind == "code":
            # One cell per character, each glyph centred in its own: drawn as one string at this size, the thick
            # strokes made neighbouring characters touch ("X9N" read as one blob at 128x128).
            cell, rgb = 0.9 * width / len(code), COLOURS[colour]
            size = min(_fit(ch, 0.5 * height, 0.85 * cell) for ch in code)
            for i, ch in enumerate(code):
                draw.text(
                    (width / 2 + (i - (len(code) - 1) / 2) * cell, height / 2),
                    ch,
                    fill=rgb,
                    font=_font(size),
                    anchor="mm",
                    stroke_width=max(1, size // 20),  # bold, but digits keep their holes
                    stroke_fill=rgb,
                )
        else:
            raise ValueError(f"unknown event kind {kind!r}")
    arr = np.asarray(img)
    arr.setflags(write=False)  # cached and shared: callers must copy before drawing on it
    return arr


def render_event(event: Event | None, width: int, height: int) -> np.ndarray:
    """The frame ([H, W, 3] uint8, read-only, cached) shown while `event` is on screen; None: background."""
    return _render_look(None if event is None else event.look(), width, height)


def frame_events(spec: SynthSpec, events: list[Event]) -> list[int]:
    """For every frame index, the index of the event on screen (-1: background). Frame i is shown at
    i / fps, and an event covers the frames whose time lies in [start, end)."""
    shown = [-1] * spec.frame_count
    for k, ev in enumerate(events):
        first = math.ceil(ev.start * spec.fps - 1e-9)
        last = math.ceil(ev.end * spec.fps - 1e-9)  # exclusive
        for i in range(max(first, 0), min(last, spec.frame_count)):
            shown[i] = k
    return shown


def frame_index(spec: SynthSpec, t: float) -> int:
    """The frame on screen at time t: the last frame whose time i / fps is <= t (the sampler's rule)."""
    return min(max(math.floor(t * spec.fps + 1e-9), 0), spec.frame_count - 1)


def event_at(events: list[Event], t: float) -> Event | None:
    """The event on screen at t in a time-sorted, non-overlapping log, or None."""
    k = bisect.bisect_right(events, t, key=lambda e: e.start) - 1
    return events[k] if k >= 0 and events[k].start <= t < events[k].end else None


class Timeline:
    """The slots of a video, handed out at random (seeded) as questions and fillers claim them."""

    def __init__(self, spec: SynthSpec, rng: random.Random):
        self.spec, self.rng = spec, rng
        self.intervals: list[tuple[float, float]] = []  # [start, end) seconds of each slot
        t = self._gap()
        while t + spec.event_seconds <= spec.duration:
            self.intervals.append((t, t + spec.event_seconds))
            t += spec.event_seconds + self._gap()
        self.free = set(range(len(self.intervals)))

    def _gap(self) -> float:
        return round(self.rng.uniform(self.spec.gap_min, self.spec.gap_max) * 2) / 2

    def take(self, n: int, within: tuple[float, float] | None = None) -> list[int] | None:
        """n random free slots (lying inside `within` seconds, if given), or None if too few."""
        pool = sorted(self.free)
        if within is not None:
            lo, hi = within
            pool = [s for s in pool if self.intervals[s][0] >= lo and self.intervals[s][1] <= hi]
        if len(pool) < n:
            return None
        chosen = self.rng.sample(pool, n)
        self.free.difference_update(chosen)
        return chosen

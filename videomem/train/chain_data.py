"""Chain-of-memory records for the cold start (method.md 2.1): the record schema, the per-clip steps the
SFT trainer consumes, and the synthetic builder that writes oracle memories from the generator's log.

A record is one (video, question): the clip plan and, for every clip t, the target memory M_t and the
provisional answer a_t. `record_to_steps` turns it into T teacher-forced steps (previous memory, clip,
target `<memory>M_t</memory><answer>a_t</answer>`); the trainer builds each prompt with the one prompt
builder (`Step.prompt`, i.e. videomem.prompt.build_step_prompt) and the clip's frames (`step_frames` for
synthetic records, ClipReader with the record's clip_config for real videos). Schema and decisions:
docs/cold-start-data.md.

Synthetic memories keep only what the question needs, each fact with the time it was first seen
(the clip's sample time, which the model sees, not the event's true start), and a closing line that
binds the provisional answer's letter to its content ("so far: APPLE (B)"). The wording (fact
templates, time format, separator, line order, empty-memory phrase) is drawn once per record from a
seeded rng, so the model learns to write memory, not to copy one template.

Provisional answer a_t: the synth solver run on the events seen so far (the video as if it ended after
clip t); where that does not single out one option, the first option in listed order that the
evidence so far does not rule out. It equals the key once the evidence is seen.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from videomem.backends.base import Prompt
from videomem.config import ClipConfig
from videomem.parse import LETTERS
from videomem.prompt import build_step_prompt, format_time
from videomem.synth.generate import SynthVideo, build_video, render_frames
from videomem.synth.questions import QUARTERS, solve
from videomem.synth.scene import Event, SynthSpec, event_at, frame_index
from videomem.video.plan import ClipSpec, plan_clips
from videomem.video.types import VideoInfo

SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------------------
# The target and the steps


def format_target(memory: str, answer: str, observed: str | None = None) -> str:
    """The one way a step's target is written; parse_step_output reads it back with no repairs, except the
    think block that `observed` (what the clip shows, written first) adds, which it drops."""
    think = f"<think>{observed.strip()}</think>" if observed is not None else ""
    return f"{think}<memory>{memory.strip()}</memory><answer>{answer.strip()}</answer>"


@dataclass
class Step:
    """One supervised turn: the model, given `memory_before` and the clip, must write `target`."""

    record_id: str
    index: int  # 0-based clip index
    num_clips: int
    question: str
    options: list[str] | None
    memory_before: str  # M_{t-1} ("" at the first clip)
    clip: ClipSpec
    memory: str  # M_t
    answer: str  # a_t (an option letter for multiple choice)
    final_answer: str | None  # the record's key (what the per-step reward scores a_t against)
    observed: str | None = None  # what the clip shows, written before the memory (records built with observe=True)

    @property
    def target(self) -> str:
        return format_target(self.memory, self.answer, self.observed)

    def prompt(self, frames: list[np.ndarray], memory_budget: int = 1024) -> Prompt:
        """The exact inference prompt for this step (frames: the clip's frames, e.g. `step_frames`)."""
        return build_step_prompt(
            question=self.question,
            options=self.options,
            memory=self.memory_before,
            clip_index=self.index,
            num_clips=self.num_clips,
            clip_start=self.clip.start,
            clip_end=self.clip.end,
            frames=frames,
            timestamps=list(self.clip.timestamps),
            memory_budget=memory_budget,
        )


def record_clips(record: dict) -> list[ClipSpec]:
    return [ClipSpec(i, c["start"], c["end"], tuple(c["timestamps"])) for i, c in enumerate(record["clips"])]


def record_to_steps(record: dict) -> list[Step]:
    """The record's T steps, in clip order (teacher forcing: each step's previous memory is the target
    memory of the step before)."""
    clips = record_clips(record)
    if len(clips) != len(record["steps"]):
        raise ValueError(f"{record['id']}: {len(clips)} clips but {len(record['steps'])} steps")
    steps, before = [], ""
    for clip, s in zip(clips, record["steps"]):
        steps.append(
            Step(
                record["id"],
                clip.index,
                len(clips),
                record["question"],
                record["options"],
                before,
                clip,
                s["memory"],
                s["answer"],
                record.get("answer"),
                s.get("observed"),
            )
        )
        before = s["memory"]
    return steps


@lru_cache(maxsize=256)
def _synth_video(spec: SynthSpec) -> SynthVideo:
    return build_video(spec)


def synth_video(record: dict) -> SynthVideo:
    """The synthetic video a record describes (events rebuilt from its spec, cached)."""
    return _synth_video(SynthSpec(**record["synth"]))


def step_frames(record: dict, step: Step) -> list[np.ndarray]:
    """A synthetic step's frames, rendered in memory at the spec's size (the trainer resizes them like
    ClipReader does). Real-video records are read with ClipReader(record['video'], clip_config)."""
    if record.get("synth") is None:
        raise ValueError(f"{record['id']}: not a synthetic record; read its frames with ClipReader")
    return render_frames(synth_video(record), list(step.clip.timestamps))


def video_clip_frames(record: dict, factor: int) -> list[list[np.ndarray]]:
    """A real-video record's frames, clip by clip, read with ClipReader under the record's clip_config
    and resized for a model of patch factor `factor` (as at inference). Raises ValueError when the
    file's plan no longer matches the record's clips (the video changed)."""
    from videomem.video.sampler import ClipReader

    cfg = ClipConfig(**{**record["clip_config"], "prefetch": False})
    with ClipReader(record["video"], cfg, factor) as reader:
        if [list(c.timestamps) for c in reader.plan] != [c["timestamps"] for c in record["clips"]]:
            raise ValueError(f"{record['id']}: {record['video']} no longer matches the record's clip plan")
        return [reader.read_clip(i).frames for i in range(len(reader.plan))]


# ---------------------------------------------------------------------------------------------------
# JSONL: one record per line, appended as each finishes; a half-written last line is dropped on read.


def read_records(path: str | Path) -> list[dict]:
    """Every complete record in `path` (missing file: none). A line that does not parse (an interrupted
    write) is skipped."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def repair_tail(path: str | Path) -> None:
    """Cut a half-written last line (no trailing newline) so appends start on a fresh line."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return
    data = p.read_bytes()
    if not data.endswith(b"\n"):
        with p.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def append_record(path: str | Path, record: dict) -> None:
    """Append one record as one line, flushed to disk (the unit a resumed run skips)."""
    with Path(path).open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------------
# Synthetic builder


def synth_info(spec: SynthSpec) -> VideoInfo:
    """What probing the encoded video would report, without encoding it (for plan_clips)."""
    return VideoInfo(
        path=f"synth://{spec.seed}",
        duration=spec.frame_count / spec.fps,
        fps=spec.fps,
        frame_count=spec.frame_count,
        width=spec.width,
        height=spec.height,
        rotation=0,
        codec="synthetic",
        keyframe_interval=None,
    )


# Wording, drawn once per record. Fact bodies per family use {code} {colour} {shape} {word}.
_LAYOUTS = ("[{t}] {b}", "{t}: {b}", "{b} at {t}", "{b} ({t})")
_TIMES = (lambda s: format_time(round(s)), lambda s: f"{round(s)}s", lambda s: f"{round(s)} s")
_SEPARATORS = ("\n", "; ", ". ")
_BODIES = {
    "needle": ("code {code}", "{code} shown", "saw code {code}"),
    "temporal": ("code {code}", "{code} shown", "saw {code}"),
    "count": ("{colour} {shape}", "a {colour} {shape}", "{colour} {shape} seen"),
    "order": ("{word}", "word {word}", "{word} shown"),
    "bind_colour": ("{word} with a {colour} {shape}", "{colour} {shape} with {word}", "{word} under {colour}"),
    "bind_word": ("{colour} {shape} with {word}", "{word} under the {colour} {shape}", "{colour} {shape}: {word}"),
    "bind_code": ("{code} in {colour}", "{colour} code {code}", "code {code}, {colour}"),
    "absent": ("{word}", "saw {word}", "word {word}"),
}
_DESCRIBE_BODIES = {"shape": "{colour} {shape} with {word}", "code": "code {code} in {colour}"}  # any event, in full
_EMPTY = ("No {noun} seen yet", "{noun}: not seen yet", "Nothing yet ({noun})")
_COUNTS = ("count {n}", "{n} so far", "seen {n} times")
_CONCLUSIONS = (
    "so far: {text} ({letter})",
    "so far: ({letter}) {text}",
    "best answer now: {letter} ({text})",
    "answer so far {letter}: {text}",
    "-> ({letter}) {text}",
)
_QUESTION_FIELDS = {
    "temporal": re.compile(r"the code (?P<code>\w+) shown"),
    "count": re.compile(r"was a (?P<colour>\w+) (?P<shape>\w+) shown"),
    "order": re.compile(r"shown (?P<which>first|last)"),
    "bind_colour": re.compile(r"with the word (?P<word>\w+)"),
    "bind_word": re.compile(r"with the (?P<colour>\w+) (?P<shape>\w+)\?"),
    "bind_code": re.compile(r"written in (?P<colour>\w+)"),
}


@dataclass(frozen=True)
class Style:
    layout: str
    time: int  # index into _TIMES
    separator: str
    body: str
    empty: str
    count: str
    conclusion: str
    newest_first: bool

    @classmethod
    def plain(cls, family: str) -> Style:
        """One fixed wording per family (the first of every choice): less for a small model to learn. Its conclusion
        names the answer's text before its letter: the text is copied from the memory, then the letter looked up
        in the options (letter first, a tiny model kept the previous step's letter; docs/training-log.md, run 8)."""
        return cls(_LAYOUTS[0], 0, _SEPARATORS[0], _BODIES[family][0], _EMPTY[0], _COUNTS[0], _CONCLUSIONS[0], False)

    @classmethod
    def draw(cls, family: str, rng: random.Random) -> Style:
        return cls(
            rng.choice(_LAYOUTS),
            rng.randrange(len(_TIMES)),
            rng.choice(_SEPARATORS),
            rng.choice(_BODIES[family]),
            rng.choice(_EMPTY),
            rng.choice(_COUNTS),
            rng.choice(_CONCLUSIONS),
            rng.random() < 0.25,
        )


def seen_per_clip(video: SynthVideo, clips: list[ClipSpec]) -> list[list[tuple[Event, float]]]:
    """For every clip, the events on screen at its sample times (what the model sees), each with the
    first sample time it shows, in time order."""
    s = video.spec
    out = []
    for clip in clips:
        seen: dict[int, tuple[Event, float]] = {}
        for t in clip.timestamps:
            ev = event_at(video.events, frame_index(s, t) / s.fps)
            if ev is not None and id(ev) not in seen:
                seen[id(ev)] = (ev, t)
        out.append(list(seen.values()))
    return out


def question_fields(family: str, question: str) -> dict:
    """What the question names (code, colour, shape, word, which), by the family's wording; {} if nothing."""
    m = _QUESTION_FIELDS.get(family)
    return m.search(question).groupdict() if m else {}


def describe_event(ev: Event) -> str:
    """An event in full, as a think block names it: 'red circle with SHIP', 'code K4F in blue'."""
    return _DESCRIBE_BODIES[ev.kind].format(**ev.as_dict())


def relevant(family: str, fields: dict, options: list[str], ev: Event) -> bool:
    """Whether the question needs this event kept in memory."""
    if family == "needle":
        return ev.kind == "code" and ev.code in options
    if family == "bind_code":  # the asked colour's option code alone: the other three only rule options out
        return ev.kind == "code" and ev.code in options and ev.colour == fields["colour"]
    if family == "temporal":
        return ev.kind == "code" and ev.code == fields["code"]
    if family in ("count", "bind_word"):
        return ev.kind == "shape" and (ev.colour, ev.shape) == (fields["colour"], fields["shape"])
    if family in ("order", "absent"):
        return ev.kind == "shape" and ev.word in options
    if family == "bind_colour":
        return ev.kind == "shape" and ev.word == fields["word"]
    raise ValueError(f"unknown family {family!r}")


_MARKED_EVENT = re.compile(r"(?P<event>[^;]+): no\b")
_NOT_NAMES = {"with", "code", "in"}  # the words describe_event adds around an event's names


def near_miss_marks(step: Step) -> list[tuple[int, int]]:
    """Character spans in step.target of the "no" marks of near misses: events that share a name (colour, shape,
    word, code) with the question but are not what it asks for ('red circle: no' under 'How many times was a red
    diamond shown?'). A model that matches one name marks these "yes" (count, docs/training-log.md session 14)."""
    if step.observed is None:
        return []
    asked = {w.lower() for w in re.findall(r"\w+", step.question)}
    start = step.target.index("<think>") + len("<think>")
    spans = []
    for m in _MARKED_EVENT.finditer(step.observed.strip()):
        names = {w.lower() for w in re.findall(r"\w+", m["event"])} - _NOT_NAMES
        if names & asked:
            spans.append((start + m.end() - 2, start + m.end()))
    return spans


def _noun(family: str, fields: dict) -> str:
    return {
        "needle": "option codes",
        "temporal": f"code {fields.get('code')}",
        "count": "{colour} {shape}",
        "order": "option words",
        "bind_colour": f"word {fields.get('word')}",
        "bind_word": "{colour} {shape}",
        "bind_code": f"{fields.get('colour')} code",
        "absent": "option words",
    }[family].format(**fields)


def provisional_answer(question: dict, seen: list[Event], seen_until: float, duration: float) -> str:
    """a_t: the solver on the events seen so far; when they do not single out one option, the first
    option (listed order) the evidence does not rule out."""
    options = question["options"]
    try:
        return LETTERS[options.index(solve(question, seen, duration))]
    except ValueError:
        pass
    family = question["family"]
    fields = question_fields(family, question["question"])
    if family == "count":
        n = sum(1 for e in seen if (e.colour, e.shape) == (fields["colour"], fields["shape"]))
        out = {o for o in options if int(o) < n}  # the count only grows
    elif family == "temporal":  # quarters over before now, without the code: it comes later
        out = {q for k, q in enumerate(QUARTERS) if (k + 1) * duration / 4 <= seen_until}
    elif family == "absent":
        out = {e.word for e in seen if e.kind == "shape"}
    else:
        out = set()
    open_ = [k for k, o in enumerate(options) if o not in out]
    return LETTERS[open_[0] if open_ else 0]


def chain_for_question(
    video: SynthVideo,
    question: dict,
    clips: list[ClipSpec],
    rng: random.Random,
    *,
    conclude: bool = True,
    seen: list[list[tuple[Event, float]]] | None = None,
    plain: bool = False,
    observe: bool = False,
    mark: bool = False,
    clip_times: bool = False,
) -> list[dict]:
    """[{"memory": M_t, "answer": a_t}] for t = 1..T; with observe, also "observed": every event the clip shows,
    in time order (the think block written before the memory); with mark, each followed by ": yes" or ": no",
    whether the question needs it, decided where the event's own tokens are the latest ones (a look back for the same
    tokens in the question), not at the memory's first token. clip_times: a fact's time is its clip's start, which
    the step prompt states in text, instead of the sample time (read off the video's timestamps)."""
    seen = seen if seen is not None else seen_per_clip(video, clips)
    family, options = question["family"], question["options"]
    fields = question_fields(family, question["question"])
    style = Style.plain(family) if plain else Style.draw(family, rng)
    fmt_time = _TIMES[style.time]
    kept: dict[str, tuple[Event, float]] = {}  # fact key -> (event, first seen); absent keys by word
    all_seen: dict[int, Event] = {}  # by identity: an event across a clip boundary is seen in both clips
    steps = []
    for clip, clip_seen in zip(clips, seen):
        for ev, t in clip_seen:
            all_seen.setdefault(id(ev), ev)
            if relevant(family, fields, options, ev):
                key = ev.word if family == "absent" else str(id(ev))
                kept.setdefault(key, (ev, clip.start if clip_times else t))
        facts = sorted(kept.values(), key=lambda x: x[1], reverse=style.newest_first)
        lines = [
            style.layout.format(
                t=fmt_time(t), b=style.body.format(code=ev.code, colour=ev.colour, shape=ev.shape, word=ev.word)
            )
            for ev, t in facts
        ]
        if family == "count":
            lines.append(style.count.format(n=len(facts)))
        elif not lines:
            lines.append(style.empty.format(noun=_noun(family, fields)))
        answer = provisional_answer(question, list(all_seen.values()), clip.end, video.spec.duration)
        if conclude:
            lines.append(style.conclusion.format(letter=answer, text=options[LETTERS.index(answer)]))
        step = {"memory": style.separator.join(lines), "answer": answer}
        if observe:
            step["observed"] = (
                "; ".join(
                    describe_event(ev)
                    + (f": {'yes' if relevant(family, fields, options, ev) else 'no'}" if mark else "")
                    for ev, _ in clip_seen
                )
                or "nothing"
            )
        steps.append(step)
    return steps


def synthetic_records(
    spec: SynthSpec,
    clip_config: ClipConfig | None = None,
    *,
    conclude: bool = True,
    style_seed: int = 0,
    plain: bool = False,
    observe: bool = False,
    mark: bool = False,
    clip_times: bool = False,
) -> list[dict]:
    """One record per question of the video `spec` describes; deterministic in its arguments. plain: one fixed
    wording per family (Style.plain) instead of a drawn one; observe, mark, clip_times: see chain_for_question."""
    cfg = clip_config or ClipConfig()
    video = _synth_video(spec)
    clips = plan_clips(synth_info(spec), cfg)
    seen = seen_per_clip(video, clips)
    name = f"synth-{spec.seed}-{spec.length_factor:g}x"
    records = []
    for q in video.questions:
        rng = random.Random(f"videomem-chain/{spec.seed}/{spec.length_factor}/{q['id']}/{style_seed}")
        records.append(
            {
                "schema": SCHEMA_VERSION,
                "id": f"{name}/{q['id']}",
                "source": "synthetic",
                "video": None,
                "synth": asdict(spec),
                "duration": spec.duration,
                "family": q["family"],
                "question": q["question"],
                "options": list(q["options"]),
                "answer": q["answer"],
                "clip_config": cfg.model_dump(),
                "clips": [{"start": c.start, "end": c.end, "timestamps": list(c.timestamps)} for c in clips],
                "steps": chain_for_question(
                    video,
                    q,
                    clips,
                    rng,
                    conclude=conclude,
                    seen=seen,
                    plain=plain,
                    observe=observe,
                    mark=mark,
                    clip_times=clip_times,
                ),
            }
        )
        # False when the plan's frames miss the evidence (e.g. few frames over a long video): a_T is a guess
        records[-1]["final_correct"] = records[-1]["steps"][-1]["answer"] == q["answer"]
    return records


DESCRIBE_QUESTION = "What is shown in this clip? List every thing with its time."


def event_records(spec: SynthSpec, frames: int = 2, *, style_seed: int = 0) -> list[dict]:
    """The easiest perception records: one per event of the video, a short clip that is exactly the event's slot
    with `frames` frames inside it, and the one event as the memory. A clip of 2 frames is one temporal patch of a
    Qwen VLM (16 video tokens at 128x128), so the answer sits in every video token the model sees: this is where a
    from-scratch vision tower first learns colours, shapes, words and codes (a 60 s clip hides each event in 1-2 of
    8 frame groups). Same record schema and prompt builder as the other records."""
    video = _synth_video(spec)
    name = f"synth-{spec.seed}-{spec.length_factor:g}x"
    records = []
    for k, ev in enumerate(video.events):
        rng = random.Random(f"videomem-event/{spec.seed}/{spec.length_factor}/{k}/{style_seed}")
        layout, fmt_time = rng.choice(_LAYOUTS), rng.choice(_TIMES)
        step = (ev.end - ev.start) / (frames + 1)
        times = [round(ev.start + step * (i + 1), 3) for i in range(frames)]
        memory = layout.format(t=fmt_time(times[0]), b=describe_event(ev))
        records.append(
            {
                "schema": SCHEMA_VERSION,
                "id": f"{name}/event-{k}",
                "source": "synthetic",
                "video": None,
                "synth": asdict(spec),
                "duration": spec.duration,
                "family": "event",
                "question": DESCRIBE_QUESTION,
                "options": None,
                "answer": "1",
                "clip_config": None,
                "clips": [{"start": ev.start, "end": ev.end, "timestamps": times}],
                "steps": [{"memory": memory, "answer": "1 thing"}],
                "final_correct": True,
            }
        )
    return records


def build_synthetic(specs: Iterable[SynthSpec], clip_config: ClipConfig | None = None, **kwargs) -> Iterator[dict]:
    for spec in specs:
        yield from synthetic_records(spec, clip_config, **kwargs)


def main(argv: list[str] | None = None) -> None:
    """python -m videomem.train.chain_data OUT.jsonl --videos N --seed S [--factors 1 2] [--clips 4]"""
    import argparse

    from videomem.synth.generate import dataset_specs

    ap = argparse.ArgumentParser(description="Write synthetic chain-of-memory records (JSONL).")
    ap.add_argument("out")
    ap.add_argument("--videos", type=int, default=1000, help="videos per length factor")
    ap.add_argument("--seed", type=int, default=1, help="dataset seed (keep evaluation seeds out of training)")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0])
    ap.add_argument("--clip-seconds", type=float, default=60.0, help="clip length; 0: --clips equal clips instead")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames-per-clip", type=int, default=16)
    ap.add_argument("--no-conclusion", action="store_true", help="leave out the memory's closing answer line")
    a = ap.parse_args(argv)
    cfg = ClipConfig(clips=a.clips, clip_seconds=a.clip_seconds or None, frames_per_clip=a.frames_per_clip)
    specs = dataset_specs(a.seed, tuple(a.factors), a.videos)
    n = guessed = 0
    right_by_t: list[int] = []  # provisional answers equal to the key, by step (of the records that have it)
    have_t: list[int] = []
    with open(a.out, "w") as f:
        for rec in build_synthetic(specs, cfg, conclude=not a.no_conclusion):
            f.write(json.dumps(rec, sort_keys=True) + "\n")
            n += 1
            guessed += not rec["final_correct"]
            for t, step in enumerate(rec["steps"]):
                if t == len(have_t):
                    right_by_t.append(0)
                    have_t.append(0)
                right_by_t[t] += step["answer"] == rec["answer"]
                have_t[t] += 1
    by_t = ", ".join(f"{r / h:.2f}" for r, h in zip(right_by_t, have_t))
    print(f"{a.out}: {n} records from {len(specs)} videos; {guessed} end on a guess (evidence not sampled); "
          f"provisional answers right by step: {by_t}")


if __name__ == "__main__":
    main()

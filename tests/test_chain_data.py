"""Chain-of-memory data: synthetic oracle memories and the real-video teacher pipeline (scripted model)."""

import json
import re

import pytest
from scripted_backend import ScriptedBackend

from videomem.backends.base import VideoPart
from videomem.config import ClipConfig
from videomem.parse import LETTERS, parse_step_output
from videomem.synth.questions import FAMILIES
from videomem.synth.scene import SynthSpec, event_at, frame_index
from videomem.train.chain_data import (
    event_records,
    format_target,
    near_miss_marks,
    read_records,
    record_clips,
    record_to_steps,
    seen_per_clip,
    step_frames,
    synth_video,
    synthetic_records,
    video_clip_frames,
)
from videomem.train.teacher import TeacherConfig, run_teacher

SEEDS = range(12)


@pytest.fixture(scope="module")
def records():
    return [r for s in SEEDS for r in synthetic_records(SynthSpec(seed=s))]


def _evidence_token(rec: dict) -> str:
    """The string the memory must hold once the answer's evidence has been seen."""
    key = rec["options"][LETTERS.index(rec["answer"])]
    if rec["family"] == "temporal":
        return re.search(r"code (\w+)", rec["question"]).group(1)
    if rec["family"] == "count":
        return key  # the running count reaches the key
    if rec["family"] == "absent":  # evidence: the three shown options
        return ""
    return key


def test_deterministic_and_json_roundtrip():
    a = synthetic_records(SynthSpec(seed=5))
    b = synthetic_records(SynthSpec(seed=5))
    assert a == b
    assert json.loads(json.dumps(a)) == a


def test_every_family_present_and_final_answer_is_the_key(records):
    assert {r["family"] for r in records} == set(FAMILIES)
    for r in records:
        assert len(r["steps"]) == len(r["clips"]) == 4
        assert r["steps"][-1]["answer"] == r["answer"], r["id"]


def test_memory_holds_the_evidence_after_the_evidence_clip_and_answers_from_then_on(records):
    for r in records:
        video = synth_video(r)
        steps = record_to_steps(r)
        seen = seen_per_clip(video, [s.clip for s in steps])
        q = next(q for q in video.questions if f"/{q['id']}" in r["id"])
        evidence = {tuple(e) for e in q["evidence"]}
        # the first clip after which every evidence event has been seen
        got, done_at = set(), None
        for t, clip_seen in enumerate(seen):
            got |= {(e.start, e.end) for e, _ in clip_seen if (e.start, e.end) in evidence}
            if got == evidence and done_at is None:
                done_at = t
        assert done_at is not None, r["id"]
        for s in steps[done_at:]:
            assert s.answer == r["answer"], (r["id"], s.index)
            assert _evidence_token(r) in s.memory, (r["id"], s.memory)
        if r["family"] == "absent":
            shown = [o for o in r["options"] if o != r["options"][LETTERS.index(r["answer"])]]
            assert all(w in steps[done_at].memory for w in shown)


def test_memories_drop_irrelevant_events_and_stay_short(records):
    for r in records:
        video = synth_video(r)
        relevant = set(r["options"]) | set(re.findall(r"[A-Z0-9]{3,}", r["question"]))
        irrelevant = {e.code or e.word for e in video.events} - relevant
        for s in r["steps"]:
            words = set(re.findall(r"[A-Z0-9]{3,}", s["memory"]))
            assert not words & irrelevant, (r["id"], s["memory"])
            assert len(s["memory"].split()) < 60, s["memory"]


def test_bind_code_memories_hold_the_asked_colours_code_alone(records):
    from videomem.synth.scene import Event
    from videomem.train.chain_data import provisional_answer

    checked = 0
    for r in (r for r in records if r["family"] == "bind_code"):
        key = r["options"]["ABCD".index(r["answer"])]
        for s in r["steps"]:  # besides the key, only the closing line's provisional answer names a code
            named = {key, r["options"]["ABCD".index(s["answer"])]}
            assert set(re.findall(r"[A-Z][0-9][A-Z]", s["memory"])) <= named, s["memory"]
        checked += key in r["steps"][-1]["memory"]
    assert checked  # the key is kept where it was seen
    q = {"family": "bind_code", "question": "Which of these codes was written in red?",
         "options": ["A2C", "E3F", "H4K", "L5M"]}  # fmt: skip
    other_colour = [Event(5, 13, "code", "blue", code="A2C")]  # rules nothing out: the memory does not keep it
    assert provisional_answer(q, other_colour, 60, 240) == "A"
    assert provisional_answer(q, other_colour + [Event(20, 28, "code", "red", code="H4K")], 60, 240) == "C"


def test_wording_varies_across_seeds(records):
    by_family: dict[str, set[str]] = {}
    for r in records:
        # the wording with the content words masked out
        shape = re.sub(
            r"\b([A-Z0-9]{3,}|\d+(:\d+)?s?|red|green|blue|yellow|purple|orange|[A-D])\b", "_", r["steps"][-1]["memory"]
        )
        by_family.setdefault(r["family"], set()).add(shape)
    for family, shapes in by_family.items():
        assert len(shapes) >= 3, (family, shapes)


def test_format_target_round_trips_through_the_parser_with_no_repairs(records):
    for r in records[:40]:
        for s in record_to_steps(r):
            out = parse_step_output(s.target, s.options)
            assert out.repairs == [] and out.memory == s.memory and out.answer == s.answer
    out = parse_step_output(format_target("  a\nb  ", "C"), ["w", "x", "y", "z"])
    assert (out.memory, out.answer, out.repairs) == ("a\nb", "C", [])


def test_steps_chain_memories_and_build_the_inference_prompt(records):
    r = records[0]
    steps = record_to_steps(r)
    assert [s.memory_before for s in steps] == [""] + [s["memory"] for s in r["steps"][:-1]]
    frames = step_frames(r, steps[2])
    assert len(frames) == 16 and frames[0].shape == (224, 224, 3)
    prompt = steps[2].prompt(frames)
    assert "Clip 3 of 4" in prompt.text and steps[2].memory_before in prompt.text
    (video,) = [p for p in prompt.parts if isinstance(p, VideoPart)]
    assert video.timestamps == list(steps[2].clip.timestamps)


def test_other_clip_plans_and_long_videos():
    recs = synthetic_records(SynthSpec(seed=1, length_factor=4), ClipConfig(clip_seconds=60, frames_per_clip=16))
    assert all(len(r["steps"]) == 16 for r in recs)
    assert all(r["steps"][-1]["answer"] == r["answer"] for r in recs)


# ---------------------------------------------------------------------------------------------------
# Teacher pipeline


def _teacher_reply(prompt, call):
    if any(isinstance(p, VideoPart) for p in prompt.parts):
        n = re.search(r"Clip (\d+) of", prompt.text).group(1)
        return f"clip {n}: a gray frame with a stamp"
    clip = re.search(r"Clip (\d+) of", prompt.text).group(1)
    memory = re.search(r"Memory so far:\n(.*?)\n\nClip", prompt.text, re.DOTALL).group(1)
    memory = "" if memory == "(empty)" else memory + " "
    return f"<memory>{memory}m{clip}</memory><answer>{'ABCD'[int(clip) % 4]}</answer>"


class _Crash(Exception):
    pass


def test_teacher_writes_records_and_resumes_after_an_interruption(make_video, tmp_path):
    video = make_video("teacher.mp4", seconds=12, fps=5, width=96, height=64, gop=10)
    items = [
        {"id": f"q{k}", "video": video, "question": f"Question {k}?", "options": ["w", "x", "y", "z"], "answer": "A"}
        for k in range(3)
    ]
    cfg = TeacherConfig(clips=ClipConfig(clips=3, frames_per_clip=2, prefetch=False))
    out = tmp_path / "teacher.jsonl"

    # 3 summaries + 3 memory steps for q0, then die inside q1.
    def crashing(prompt, call):
        if call > 8:
            raise _Crash
        return _teacher_reply(prompt, call)

    with pytest.raises(_Crash):
        run_teacher(items, out, ScriptedBackend(crashing), config=cfg)
    assert [r["id"] for r in read_records(out)] == ["q0"]
    with out.open("a") as f:
        f.write('{"id": "q1", "half-writ')  # a write cut by the crash

    backend = ScriptedBackend(_teacher_reply)
    stats = run_teacher(items, out, backend, config=cfg)
    assert stats == {"written": 2, "skipped": 1, "failed": 0, "total": 3}
    recs = read_records(out)
    assert [r["id"] for r in recs] == ["q0", "q1", "q2"]
    assert all(json.loads(line) for line in out.read_text().splitlines())  # the torn line is gone
    assert len(backend.prompts) == 3 + 2 * 3  # summaries once per video, then 3 steps per question

    for r in recs:
        assert [s["memory"] for s in r["steps"]] == ["m1", "m1 m2", "m1 m2 m3"]
        assert [s["answer"] for s in r["steps"]] == ["B", "C", "D"]
        assert r["steps"][1]["summary"] == "clip 2: a gray frame with a stamp"
        assert all(s["repairs"] == [] for s in r["steps"]) and r["final_correct"] is False
        steps = record_to_steps(r)
        assert steps[2].memory_before == "m1 m2" and steps[2].target == "<memory>m1 m2 m3</memory><answer>D</answer>"
        assert len(steps[0].clip.timestamps) == 2
    frames = video_clip_frames(recs[0], 28)
    assert [len(f) for f in frames] == [2, 2, 2] and frames[0][0].shape[0] % 28 == 0


def test_teacher_keeps_unreadable_output_as_data_with_repairs(make_video, tmp_path):
    video = make_video("teacher.mp4", seconds=12, fps=5, width=96, height=64, gop=10)
    item = {"id": "q", "video": video, "question": "Which?", "options": ["w", "x"], "answer": "B"}
    replies = iter(["s1", "s2", "<memory>kept</memory><answer>B</answer>", "no tags at all"])
    cfg = TeacherConfig(clips=ClipConfig(clips=2, frames_per_clip=1, prefetch=False))
    run_teacher([item], tmp_path / "t.jsonl", ScriptedBackend(lambda p, c: next(replies)), config=cfg)
    (rec,) = read_records(tmp_path / "t.jsonl")
    last = rec["steps"][-1]
    assert last["memory"] == "kept" and last["answer"] == "B" and rec["final_correct"] is True
    assert "kept_previous_memory" in last["repairs"] and "answer_filled" in last["repairs"]


def test_provisional_answer_before_the_evidence_is_the_first_option_not_ruled_out():
    from videomem.synth.questions import QUARTERS
    from videomem.synth.scene import Event
    from videomem.train.chain_data import provisional_answer

    def shape(colour, shape, word, start=10.0):
        return Event(start, start + 8, "shape", colour, shape=shape, word=word)

    needle = {"family": "needle", "question": "Which of these codes was shown in the video?",
              "options": ["A2C", "E3F", "H4K", "L5M"]}  # fmt: skip
    assert provisional_answer(needle, [], 60, 240) == "A"  # nothing rules any code out
    assert provisional_answer(needle, [Event(5, 13, "code", "red", code="H4K")], 60, 240) == "C"
    count = {"family": "count", "question": "How many times was a red circle shown?", "options": ["3", "4", "5", "6"]}
    assert provisional_answer(count, [shape("red", "circle", "CAT")], 60, 240) == "A"  # 1 so far: at least 3
    assert provisional_answer(count, [shape("red", "circle", "CAT", t) for t in (0, 20, 40, 60)], 90, 240) == "B"
    temporal = {"family": "temporal", "question": "In which part of the video was the code A2C shown?",
                "options": list(QUARTERS)}  # fmt: skip
    assert provisional_answer(temporal, [], 120, 240) == "C"  # two quarters over without it
    absent = {"family": "absent", "question": "Which of these words was never shown?",
              "options": ["CAT", "DOG", "SUN", "KEY"]}  # fmt: skip
    assert provisional_answer(absent, [shape("red", "circle", "CAT"), shape("red", "star", "SUN", 30)], 60, 240) == "B"
    last = {
        "family": "order",
        "question": "Which of these words was shown last?",
        "options": ["CAT", "DOG", "SUN", "KEY"],
    }
    assert provisional_answer(last, [shape("red", "circle", "SUN"), shape("red", "star", "DOG", 30)], 60, 240) == "B"


def test_teacher_runs_with_a_real_tiny_model_locally_and_over_loopback_http(make_video, tmp_path, monkeypatch):
    """Output of a random tiny model is junk; the point is that the pipeline runs end to end through both
    backend kinds and writes well-formed records (the VLM local, the LLM behind `videomem serve`)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from videomem.backends.hf import HFBackend
    from videomem.backends.openai_http import OpenAIBackend
    from videomem.models import build_tiny_vlm
    from videomem.serve import background_server, create_app

    video = make_video("teacher.mp4", seconds=12, fps=5, width=96, height=64, gop=10)
    local = HFBackend(
        str(build_tiny_vlm("qwen2_5_vl", tmp_path / "ck", text_hidden=64, vision_hidden=32, init_std=0.3))
    )
    item = {
        "id": "q",
        "video": video,
        "question": "What is shown?",
        "options": ["a cat", "a dog", "a car"],
        "answer": "B",
    }
    cfg = TeacherConfig(clips=ClipConfig(clips=2, frames_per_clip=2, prefetch=False), max_new_tokens=24)
    with background_server(create_app(local, "tiny")) as url:
        remote = OpenAIBackend("tiny", base_url=url + "/v1", retries=0)
        assert run_teacher([item], tmp_path / "t.jsonl", local, remote, cfg)["written"] == 1
    (rec,) = read_records(tmp_path / "t.jsonl")
    assert rec["teacher"]["vlm"] != rec["teacher"]["llm"] == "tiny"
    assert len(rec["steps"]) == 2 and all(s["summary"] and s["answer"] in "ABC" for s in rec["steps"])
    missing = dict(item, id="gone", video=tmp_path / "missing.mp4")
    stats = run_teacher([missing, item], tmp_path / "t.jsonl", local, config=cfg)
    assert stats == {"written": 0, "skipped": 1, "failed": 1, "total": 1}
    for step in record_to_steps(rec):
        assert parse_step_output(step.target, step.options).memory == step.memory


def test_observed_steps_name_every_event_the_clip_shows_before_the_memory():
    spec = SynthSpec(seed=3, length_factor=2)
    cfg = ClipConfig(clip_seconds=60, frames_per_clip=16)
    recs = synthetic_records(spec, cfg, plain=True, observe=True, clip_times=True)
    video = synth_video(recs[0])
    total = 0
    for step in record_to_steps(recs[0]):
        shown = {}  # in the order the sampled frames show them
        for t in step.clip.timestamps:
            if (e := event_at(video.events, frame_index(spec, t) / spec.fps)) is not None:
                shown.setdefault(id(e), e)
        bodies = [f"code {e.code} in {e.colour}" if e.kind == "code" else f"{e.colour} {e.shape} with {e.word}"
                  for e in shown.values()]  # fmt: skip
        assert step.observed == ("; ".join(bodies) or "nothing")
        assert step.target.startswith(f"<think>{step.observed}</think><memory>")
        out = parse_step_output(step.target, step.options)
        assert (out.memory, out.answer, out.repairs) == (step.memory, step.answer, ["removed_think_block"])
        total += len(bodies)
    assert total >= 20  # dense: several labelled events per clip (density 0.6 of ~6 slots a minute)
    # the same facts and answers as without observe; times are the clips' starts, which the prompt states
    sampled = synthetic_records(spec, cfg, plain=True)
    for rec, ref in zip(recs, sampled, strict=True):
        assert [s["answer"] for s in rec["steps"]] == [s["answer"] for s in ref["steps"]]
        for step in record_to_steps(rec):
            times = re.findall(r"\[(\d+:\d\d)\]", step.memory)
            assert set(times) <= {f"{int(c.start) // 60}:00" for c in record_clips(rec)[: step.index + 1]}
        strip = lambda m: re.sub(r"\[[\d:.]+\] ", "", m)
        assert [strip(s["memory"]) for s in rec["steps"]] == [strip(s["memory"]) for s in ref["steps"]]
    assert any(re.search(r"\[\d+:\d\d\]", s["memory"]) for r in recs for s in r["steps"])


def test_marked_observations_say_which_events_the_memory_keeps():
    cfg = ClipConfig(clip_seconds=60, frames_per_clip=16)
    for seed in range(4):
        spec = SynthSpec(seed=seed, length_factor=2)
        plain = synthetic_records(spec, cfg, plain=True, observe=True, clip_times=True)
        marked = synthetic_records(spec, cfg, plain=True, observe=True, mark=True, clip_times=True)
        for rec, ref in zip(marked, plain, strict=True):
            facts_before: set[str] = set()
            for step, unmarked in zip(record_to_steps(rec), record_to_steps(ref), strict=True):
                assert re.sub(r": (yes|no)(?=;|$)", "", step.observed) == unmarked.observed
                assert step.memory == unmarked.memory and step.answer == unmarked.answer
                items = step.observed.split("; ") if step.observed != "nothing" else []
                assert all(item.endswith((": yes", ": no")) for item in items)
                facts = {line for line in step.memory.split("\n") if line.startswith("[")}
                if facts - facts_before:  # the memory gained a fact: the clip showed an event marked yes
                    assert any(item.endswith(": yes") for item in items), (rec["question"], step.observed, step.memory)
                if any(item.endswith(": yes") for item in items):
                    assert facts, (rec["question"], step.observed)  # marked yes: the memory holds a fact
                facts_before = facts


def test_near_miss_marks_are_the_no_marks_of_events_sharing_a_name_with_the_question():
    cfg = ClipConfig(clip_seconds=60, frames_per_clip=16)
    found = {}
    for seed in range(6):
        for rec in synthetic_records(SynthSpec(seed=seed, length_factor=2), cfg, plain=True, observe=True, mark=True):
            asked = set(re.findall(r"\w+", rec["question"].lower()))
            for step in record_to_steps(rec):
                spans = near_miss_marks(step)
                target = step.target
                assert all(target[s:e] == "no" and target[s - 2 : s] == ": " for s, e in spans)
                marked = [target[: s - 2].rsplit("; ", 1)[-1].removeprefix("<think>") for s, _ in spans]
                unmarked = [item.removesuffix(": no") for item in step.observed.split("; ") if item.endswith(": no")]
                for item in unmarked:  # every "no" item naming a colour, shape, word or code the question names
                    names = set(re.findall(r"\w+", item.lower())) - {"with", "code", "in"}
                    assert (item in marked) == bool(names & asked), (rec["question"], item)
                if spans:
                    found[rec["family"]] = marked[0]
    assert {"count", "bind_word"} <= set(found)  # a red circle under "a red diamond"
    assert not {"needle", "order", "absent"} & set(found)  # their questions name no event


def test_event_records_show_one_event_in_every_frame():
    spec = SynthSpec(seed=4)
    recs = event_records(spec, frames=2)
    video = synth_video(recs[0])
    assert len(recs) == len(video.events) >= 10
    for rec, ev in zip(recs, video.events):
        (step,) = record_to_steps(rec)
        assert all(ev.start < t < ev.end for t in step.clip.timestamps) and len(step.clip.timestamps) == 2
        frames = step_frames(rec, step)
        assert (frames[0] != frames[0][0, 0]).any() and (frames[0] == frames[1]).all()  # the event, drawn, twice
        body = f"code {ev.code} in {ev.colour}" if ev.kind == "code" else f"{ev.colour} {ev.shape} with {ev.word}"
        out = parse_step_output(step.target)
        assert body in out.memory and out.answer == "1 thing" and out.repairs == []


def test_plain_style_is_one_wording_per_family_with_the_same_facts():
    cfg = ClipConfig(clip_seconds=60, frames_per_clip=16)
    drawn = [r for s in range(6) for r in synthetic_records(SynthSpec(seed=s), cfg)]
    plain = [r for s in range(6) for r in synthetic_records(SynthSpec(seed=s), cfg, plain=True)]
    for fam in FAMILIES:
        conclusions = {r["steps"][-1]["memory"].rsplit("\n", 1)[-1].split(":")[0] for r in plain if r["family"] == fam}
        assert conclusions == {"so far"}, (fam, conclusions)
    # the same answers at every step: only the wording differs
    assert [[s["answer"] for s in r["steps"]] for r in plain] == [[s["answer"] for s in r["steps"]] for r in drawn]
    assert len({r["steps"][-1]["memory"].split("\n")[-1][:6] for r in drawn}) > 1

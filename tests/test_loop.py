"""The memory loop over real decoded video, with a scripted model so every step can be checked."""

import json

import numpy as np
import pytest
from scripted_backend import ScriptedBackend

from videomem.config import load_config
from videomem.errors import ResumeError, VideoMemError
from videomem.loop import VideoMem
from videomem.trace import read_trace
from videomem.video.writer import generate_test_video, read_stamp

OPTIONS = ["one", "two", "three", "four"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("loop") / "v.mp4"
    generate_test_video(path, seconds=40, fps=10, width=224, height=160, gop=20)
    return path


def make_vm(backend, **overrides):
    cfg = load_config(overrides={"clips.clips": 4, "clips.frames_per_clip": 3, **overrides})
    return VideoMem(backend=backend, config=cfg)


def test_each_step_sees_only_its_clip_and_the_previous_memory(video, tmp_path):
    backend = ScriptedBackend()
    result = make_vm(backend).ask(video, "Which?", OPTIONS, trace=tmp_path / "t.jsonl")

    assert [s.memory_after for s in result.steps] == ["c1", "c1 c2", "c1 c2 c3", "c1 c2 c3 c4"]
    assert [s.memory_before for s in result.steps] == ["", "c1", "c1 c2", "c1 c2 c3"]
    assert result.provisional_answers == ["A", "B", "C", "D"] and result.answer == "D"
    for step, prompt in zip(result.steps, backend.prompts):
        (video_part,) = [p for p in prompt.parts if hasattr(p, "frames")]
        # Frames of this clip only, exact frames: the stamped index is the frame shown at each time.
        assert all(step.start <= t < step.end for t in video_part.timestamps)
        assert [read_stamp(f) for f in video_part.frames] == step.frame_indices == [int(t * 10) for t in step.timestamps]
        assert all(f.shape[0] % 28 == 0 and f.shape[1] % 28 == 0 for f in video_part.frames)
        assert ("(empty)" in prompt.text) == (step.clip == 0)


def test_memory_hard_cap_truncates_and_records(video, tmp_path):
    backend = ScriptedBackend(lambda p, n: "<memory>" + "word " * 50 + "</memory><answer>A</answer>")
    result = make_vm(backend, **{"memory.max_tokens": 8}).ask(video, "Which?", OPTIONS, trace=tmp_path / "t.jsonl")
    for step in result.steps:
        assert step.memory_truncated and step.memory_tokens_written == 50 and step.memory_tokens == 8
        assert step.memory_after == " ".join(["word"] * 8)


def test_malformed_output_keeps_previous_memory_and_records_repairs(video, tmp_path):
    replies = iter(["<memory>red at 3s</memory><answer>A</answer>", "I am not sure, maybe B", "<memory>red at 3s; blue", ""])
    result = make_vm(ScriptedBackend(lambda p, n: next(replies))).ask(video, "Which?", OPTIONS, trace=tmp_path / "t.jsonl")
    s = result.steps
    assert s[1].memory_after == "red at 3s" and "kept_previous_memory" in s[1].repairs and s[1].answer == "B"
    assert s[2].memory_after == "red at 3s; blue" and "unclosed_memory_tag" in s[2].repairs
    assert s[3].memory_after == "red at 3s; blue" and s[3].answer is None
    assert result.answer is None


def test_trace_records_config_and_every_step(video, tmp_path):
    path = tmp_path / "t.jsonl"
    make_vm(ScriptedBackend()).ask(video, "Which?", OPTIONS, trace=path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in rows] == ["run", "step", "step", "step", "step", "final"]
    header = rows[0]
    assert header["config"]["clips"]["frames_per_clip"] == 3 and header["num_clips"] == 4
    assert header["video"]["frame_count"] == 400 and header["question"] == "Which?"
    assert rows[-1]["provisional_answers"] == ["A", "B", "C", "D"]


def test_resume_continues_after_last_finished_clip_without_redoing(video, tmp_path):
    path = tmp_path / "t.jsonl"

    def crash_at_clip_3(prompt, call):
        if ScriptedBackend.clip_number(prompt) == 3:
            raise KeyboardInterrupt
        return ScriptedBackend.default_reply(prompt, call)

    with pytest.raises(KeyboardInterrupt):
        make_vm(ScriptedBackend(crash_at_clip_3)).ask(video, "Which?", OPTIONS, trace=path)
    before = path.read_text().splitlines()
    assert len(before) == 3  # header + clips 1, 2

    # Without --resume the finished work is protected.
    with pytest.raises(ResumeError, match="2 finished clip"):
        make_vm(ScriptedBackend()).ask(video, "Which?", OPTIONS, trace=path)

    backend = ScriptedBackend()
    result = make_vm(backend).ask(video, "Which?", OPTIONS, trace=path, resume=True)
    assert [ScriptedBackend.clip_number(p) for p in backend.prompts] == [3, 4]
    assert ScriptedBackend.memory_in(backend.prompts[0]) == "c1 c2"
    after = path.read_text().splitlines()
    assert after[:3] == before and len(after) == 6
    assert result.provisional_answers == ["A", "B", "C", "D"]

    # Resuming a finished run redoes nothing.
    again = ScriptedBackend()
    assert make_vm(again).ask(video, "Which?", OPTIONS, trace=path, resume=True).answer == "D"
    assert again.prompts == [] and path.read_text().splitlines() == after


def test_resume_drops_a_half_written_line(video, tmp_path):
    path = tmp_path / "t.jsonl"
    make_vm(ScriptedBackend()).ask(video, "Which?", OPTIONS, trace=path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:40])  # killed while writing clip 3
    assert len(read_trace(path).steps) == 2
    backend = ScriptedBackend()
    make_vm(backend).ask(video, "Which?", OPTIONS, trace=path, resume=True)
    assert [ScriptedBackend.clip_number(p) for p in backend.prompts] == [3, 4]
    assert [json.loads(x)["type"] for x in path.read_text().splitlines()] == ["run"] + ["step"] * 4 + ["final"]


def test_a_kill_while_the_header_is_written_leaves_no_trace(video, tmp_path, monkeypatch):
    # Seen in CI: a run killed between creating the trace and writing its header left an empty file,
    # and the resumed run refused it as "not a videomem trace".
    path = tmp_path / "t.jsonl"

    def killed(fd):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("videomem.trace.os.fsync", killed)
        with pytest.raises(KeyboardInterrupt):
            make_vm(ScriptedBackend()).ask(video, "Which?", OPTIONS, trace=path, resume=True)
    assert not path.exists()
    assert make_vm(ScriptedBackend()).ask(video, "Which?", OPTIONS, trace=path, resume=True).answer == "D"


def test_resume_refuses_a_trace_of_another_run(video, tmp_path):
    path = tmp_path / "t.jsonl"
    make_vm(ScriptedBackend()).ask(video, "Which?", OPTIONS, trace=path)
    with pytest.raises(ResumeError, match="another run"):
        make_vm(ScriptedBackend(), **{"clips.frames_per_clip": 5}).ask(video, "Which?", OPTIONS, trace=path, resume=True)
    # --fresh starts over.
    backend = ScriptedBackend()
    make_vm(backend, **{"clips.frames_per_clip": 5}).ask(video, "Which?", OPTIONS, trace=path, fresh=True)
    assert len(backend.prompts) == 4


def test_fixed_clip_seconds_grows_the_number_of_clips(video, tmp_path):
    backend = ScriptedBackend()
    result = make_vm(backend, **{"clips.clip_seconds": 5.0}).ask(video, "Which?", OPTIONS, trace=tmp_path / "t.jsonl")
    assert len(result.steps) == 8 and "Clip 8 of 8" in backend.prompts[-1].text


def test_options_written_in_the_question_are_used(video, tmp_path):
    backend = ScriptedBackend()
    q = "What was shown?\n(A) one\n(B) two\n(C) three"
    result = make_vm(backend).ask(video, q, trace=tmp_path / "t.jsonl")
    assert result.options == ["one", "two", "three"] and result.question == "What was shown?"
    assert backend.prompts[0].text.count("(B) two") == 1


def test_empty_question_is_refused(video, tmp_path):
    with pytest.raises(VideoMemError, match="question is empty"):
        make_vm(ScriptedBackend()).ask(video, "   ", trace=tmp_path / "t.jsonl")


def test_session_takes_raw_frames_one_clip_at_a_time():
    vm = VideoMem(backend=ScriptedBackend(), config=load_config(overrides={"clips.max_pixels": 131072}))  # the paper's cap
    session = vm.session("Which?", OPTIONS)
    assert session.answer is None
    frames = [np.full((1080, 1920, 3), 100, np.uint8)] * 2
    session.feed(frames, [0.0, 1.0])
    assert session.answer == "A" and session.memory == "c1"
    session.feed(frames, [2.0, 3.0])
    assert session.answer == "B" and session.memory == "c1 c2"
    prompt = vm.backend.prompts[-1]
    (part,) = [p for p in prompt.parts if hasattr(p, "frames")]
    h, w, _ = part.frames[0].shape
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 131072 and abs(w / h - 16 / 9) < 0.15  # smart_resize rounds sides to the factor


def test_a_failing_server_mid_run_keeps_finished_clips(video, tmp_path):
    from videomem.errors import BackendError

    path = tmp_path / "t.jsonl"

    def server_dies_at_clip_3(prompt, call):
        if ScriptedBackend.clip_number(prompt) == 3:
            raise BackendError("server at http://127.0.0.1:9/v1 unreachable after 5 tries")
        return ScriptedBackend.default_reply(prompt, call)

    with pytest.raises(BackendError):
        make_vm(ScriptedBackend(server_dies_at_clip_3)).ask(video, "Which?", OPTIONS, trace=path)
    assert [s.memory_after for s in read_trace(path).steps] == ["c1", "c1 c2"]

"""The evaluation harness: methods, durable resumable results, parallel workers, summary, report.

A scripted model answers: the memory loop's steps answer A, B, C, D by clip (so a_4 = D), and the
uniform baseline's single call answers `(B)` unless the test says otherwise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from scripted_backend import ScriptedBackend

from videomem.config import load_config
from videomem.eval.harness import RESULTS, read_header, read_results, run_eval
from videomem.eval.items import Item
from videomem.eval.methods import (
    FRAME_OVERHEAD_TOKENS,
    LockedBackend,
    OracleMethod,
    RandomMethod,
    UniformMethod,
    VideoMemMethod,
    context_window,
    frame_budget,
    frames_that_fit,
    temporal_patch,
)
from videomem.eval.report import plot_accuracy_vs_duration, plot_provisional_accuracy, write_report
from videomem.eval.summary import summarize

OPTIONS = ["red", "green", "blue", "yellow"]
TIMING = ("latency_s", "wall_s")


def reply(direct_answer: str = "(B)"):
    def answer(prompt, call):
        if "Clip " in prompt.text:
            return ScriptedBackend.default_reply(prompt, call)
        return direct_answer

    return answer


@pytest.fixture(scope="module")
def videos(make_video):
    short = make_video("eval-20s.mp4", seconds=20, fps=10, width=224, height=160, gop=20)
    long = make_video("eval-40s.mp4", seconds=40, fps=10, width=224, height=160, gop=20)
    return short, long


@pytest.fixture(scope="module")
def items(videos):
    short, long = videos
    golds = ["D", "B", "A", "C"]
    return [
        Item("toy", f"q{i}", [short, long][i % 2], f"Which colour? ({i})", OPTIONS, gold, f"cat{i % 2}", duration=[20.0, 40.0][i % 2])
        for i, gold in enumerate(golds)
    ]


def config(**overrides):
    # the paper's pixel cap, pinned: the default model ("bundled") would bring its own (videomem.yaml: 16,384)
    return load_config(overrides={"clips.clips": 4, "clips.frames_per_clip": 3, "clips.max_pixels": 131072,
                                  "clips.prefetch": False, **overrides})  # fmt: skip


def methods(backend, run_dir, cfg=None):
    cfg = cfg or config()
    shared = LockedBackend(backend)
    return [VideoMemMethod(shared, cfg, run_dir / "traces" / "videomem"), UniformMethod(shared, cfg), RandomMethod(seed=1)]


def strip_timing(rows):
    return sorted(
        json.dumps({k: v for k, v in r.items() if k not in TIMING and k != "extra"}, sort_keys=True) for r in rows
    )


def test_one_result_line_per_method_and_item_and_a_reproducible_header(items, tmp_path):
    backend = ScriptedBackend(reply())
    rows = run_eval(items, methods(backend, tmp_path), tmp_path, config=config(), backend=backend, seed=1)
    lines = (tmp_path / RESULTS).read_text().splitlines()
    assert len(lines) == len(rows) == 12
    assert sorted((r["method"], r["item"]) for r in read_results(tmp_path)) == sorted(
        (m, i.id) for m in ("videomem", "uniform", "random") for i in items
    )
    by = {(r["method"], r["item"]): r for r in rows}
    # videomem: a_1..a_4 = A, B, C, D; 4 calls of 3 frames; the trace is under the run dir.
    vm = by[("videomem", "q0")]
    assert vm["letter"] == "D" and vm["correct"] and vm["provisional"] == ["A", "B", "C", "D"]
    assert vm["provisional_correct"] == [False, False, False, True]
    assert vm["calls"] == 4 and vm["frames"] == 12 and vm["prompt_tokens"] > 0
    assert Path(vm["extra"]["trace"]).parent == tmp_path / "traces" / "videomem"
    # uniform: the same 12-frame budget in one call, parsed from "(B)".
    un = by[("uniform", "q1")]
    assert un["letter"] == "B" and un["correct"] and un["calls"] == 1 and un["frames"] == 12
    assert un["extra"]["frame_budget"] == 12 and not un["extra"]["budget_cut_by_context"]
    header = read_header(tmp_path)
    assert header["items"] == 4 and header["benchmark"] == "toy" and header["methods"] == ["videomem", "uniform", "random"]
    assert header["config"]["clips"]["frames_per_clip"] == 3 and header["config"]["clips"]["max_pixels"] == 131072
    assert header["config"]["model"]["seed"] == 0 and header["eval"]["seed"] == 1 and header["version"]
    assert header["backend"] == "scripted"


def test_resume_after_a_kill_loses_and_repeats_nothing(items, tmp_path):
    backend = ScriptedBackend(reply())
    run_eval(items, methods(backend, tmp_path), tmp_path, config=config(), backend=backend)
    full = read_results(tmp_path)
    lines = (tmp_path / RESULTS).read_text().splitlines(keepends=True)
    # Killed while writing line 6: lines 6.. are lost, line 6 half-written.
    kept = lines[:5]
    (tmp_path / RESULTS).write_text("".join(kept) + lines[5][:30])
    lost = [json.loads(x) for x in lines[5:]]
    # And one videomem item was in the middle of its clips: its trace holds 2 of 4 steps.
    lost_vm = next(r for r in lost if r["method"] == "videomem")
    trace = Path(lost_vm["extra"]["trace"])
    trace_lines = trace.read_text().splitlines(keepends=True)
    trace.write_text("".join(trace_lines[:3]))  # header + 2 steps

    again = ScriptedBackend(reply())
    rows = run_eval(items, methods(again, tmp_path), tmp_path, config=config(), backend=again)
    on_disk = read_results(tmp_path)
    keys = [(r["method"], r["item"]) for r in on_disk]
    assert len(keys) == len(set(keys)) == 12 and len(rows) == 12
    assert strip_timing(on_disk) == strip_timing(full)
    # Only lost work was recomputed: one call per lost uniform row, the 2 missing clips of the cut
    # trace; other lost videomem rows came back from their complete traces without a model call.
    lost_uniform = sum(r["method"] == "uniform" for r in lost)
    assert len(again.prompts) == lost_uniform + 2
    assert all(line.endswith("\n") for line in (tmp_path / RESULTS).read_text().splitlines(keepends=True))

    # A finished run redoes nothing.
    third = ScriptedBackend(reply())
    run_eval(items, methods(third, tmp_path), tmp_path, config=config(), backend=third)
    assert third.prompts == [] and len(read_results(tmp_path)) == 12


def test_resume_refuses_another_configuration(items, tmp_path):
    backend = ScriptedBackend(reply())
    run_eval(items[:1], [RandomMethod()], tmp_path, config=config())
    with pytest.raises(Exception, match="another configuration"):
        run_eval(items[:1], [RandomMethod()], tmp_path, config=config(**{"clips.frames_per_clip": 5}))
    del backend


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from scripted_backend import ScriptedBackend
    from videomem.config import load_config
    from videomem.eval.harness import run_eval
    from videomem.eval.items import Item
    from videomem.eval.methods import LockedBackend, UniformMethod, VideoMemMethod

    run_dir, video = Path(sys.argv[1]), Path(sys.argv[2])

    def slow(prompt, call):
        time.sleep(0.05)
        return ScriptedBackend.default_reply(prompt, call) if "Clip " in prompt.text else "(B)"

    backend = ScriptedBackend(slow)
    cfg = load_config(overrides={"clips.clips": 4, "clips.frames_per_clip": 2, "clips.prefetch": False})
    shared = LockedBackend(backend)
    ms = [VideoMemMethod(shared, cfg, run_dir / "traces"), UniformMethod(shared, cfg)]
    items = [Item("toy", f"q{i}", video, f"Which? ({i})", ["a", "b", "c", "d"], "ABCD"[i % 4], "c", 20.0) for i in range(12)]
    run_eval(items, ms, run_dir, config=cfg, workers=2)
    print("calls", len(backend.prompts))
    """
)


def test_kill_9_mid_run_then_resume(videos, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(script), str(run_dir), str(videos[0])]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        results = run_dir / RESULTS
        if results.exists() and len(results.read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_with = len(read_results(run_dir))
    assert 5 <= killed_with < 24, "the run finished before the kill: make the scripted model slower"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    rows = read_results(run_dir)
    keys = [(r["method"], r["item"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24
    calls = int(done.stdout.split()[-1])
    # Whole run: 12 items x (4 clips + 1 uniform call) = 60 calls; the resumed run made fewer.
    assert calls < 60
    assert all(r["letter"] == ("D" if r["method"] == "videomem" else "B") for r in rows)


def test_parallel_workers_give_the_same_results_as_one(items, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    b1, b3 = ScriptedBackend(reply()), ScriptedBackend(reply())
    run_eval(items, methods(b1, one), one, config=config(), workers=1)
    run_eval(items, methods(b3, many), many, config=config(), workers=3)
    assert strip_timing(read_results(one)) == strip_timing(read_results(many))
    assert len(b1.prompts) == len(b3.prompts) == 4 * 4 + 4


def test_unparsed_answers_and_errors_count_as_wrong(items, videos, tmp_path):
    backend = ScriptedBackend(reply("I cannot tell from these frames."))
    broken = Item("toy", "broken", tmp_path / "missing.mp4", "Which?", OPTIONS, "A", "cat0", duration=20.0)
    cfg = config()
    run_eval([*items, broken], [UniformMethod(LockedBackend(backend), cfg)], tmp_path, config=cfg)
    rows = read_results(tmp_path)
    assert all(r["letter"] is None and r["correct"] is False for r in rows)
    s = summarize(rows)["methods"]["uniform"]
    assert s["accuracy"] == 0 and s["n"] == 5 and s["unparsed"] == 4 and s["errors"] == 1
    (err,) = [r for r in rows if r["error"]]
    assert err["item"] == "broken" and "missing.mp4" in err["error"]


def _row(method, item, correct, *, category="c", duration=60.0, group=None, provisional=(), gold="A", **costs):
    letter = gold if correct else ("B" if correct is False else None)
    return {
        "method": method, "benchmark": "toy", "item": item, "category": category, "duration": duration,
        "duration_group": group, "gold": gold, "letter": letter, "correct": letter == gold, "parsed": letter is not None,
        "provisional_correct": list(provisional), "error": None,
        "latency_s": costs.get("latency_s", 1.0), "wall_s": 1.0, "prompt_tokens": costs.get("prompt_tokens", 100),
        "completion_tokens": 10, "frames": costs.get("frames", 8), "calls": 1,
    }


def test_summary_numbers_by_hand():
    rows = [
        _row("vm", "a", True, category="x", duration=60, provisional=[False, True], latency_s=2.0, frames=8),
        _row("vm", "b", False, category="x", duration=60, provisional=[False, False], latency_s=4.0, frames=8),
        _row("vm", "c", True, category="y", duration=120, provisional=[True, True, True], latency_s=6.0, frames=12),
        _row("vm", "d", None, category="y", duration=120, provisional=[True], latency_s=0.0, frames=12),  # unparsed
        _row("rnd", "a", True, duration=60), _row("rnd", "b", False, duration=60),
    ]
    s = summarize(rows)
    vm = s["methods"]["vm"]
    assert (vm["n"], vm["correct"], vm["accuracy"], vm["unparsed"], vm["errors"]) == (4, 2, 0.5, 1, 0)
    assert vm["by_category"]["x"]["accuracy"] == 0.5 and vm["by_category"]["y"]["accuracy"] == 0.5
    assert vm["mean_category_accuracy"] == 0.5
    assert list(vm["by_duration"]) == ["1 min", "2 min"]
    assert vm["by_duration"]["1 min"] == {"n": 2, "correct": 1, "accuracy": 0.5, "seconds": 60.0}
    # a_1: 2 of 4 right; a_2: 2 of 3 (item d stopped after one clip); a_3: 1 of 1.
    assert {t: (v["n"], v["correct"]) for t, v in vm["by_step"].items()} == {1: (4, 2), 2: (3, 2), 3: (1, 1)}
    assert vm["per_item"]["latency_s"] == 3.0 and vm["per_item"]["frames"] == 10
    # 6 minutes of video = 0.1 h: 12 s of latency and 40 frames -> 120 s and 400 frames per video-hour.
    assert vm["video_hours"] == pytest.approx(0.1)
    assert vm["per_video_hour"]["latency_s"] == pytest.approx(120) and vm["per_video_hour"]["frames"] == pytest.approx(400)
    assert s["methods"]["rnd"]["accuracy"] == 0.5 and s["methods"]["rnd"]["by_step"] == {}
    assert s["items"] == 4


def test_duration_buckets_use_the_benchmark_groups_then_exact_lengths_then_powers_of_two():
    grouped = summarize([_row("m", "a", True, group="long", duration=None), _row("m", "b", False, group="short", duration=None)])
    assert list(grouped["methods"]["m"]["by_duration"]) == ["short", "long"]  # known names in their order
    # Groups with durations sit at their mean length: 16x after 2x, not between 1x and 2x.
    factors = summarize([_row("m", f"{k}", True, group=f"{k}x", duration=60.0 * k) for k in (16, 1, 2, 8, 4)])
    assert list(factors["methods"]["m"]["by_duration"]) == ["1x", "2x", "4x", "8x", "16x"]
    assert factors["methods"]["m"]["by_duration"]["16x"]["seconds"] == 960.0
    many = summarize([_row("m", str(i), True, duration=60 * (1.5**i)) for i in range(12)])
    labels = list(many["methods"]["m"]["by_duration"])
    assert labels[0] == "1 min-2 min" and len(labels) < 12
    assert sum(v["n"] for v in many["methods"]["m"]["by_duration"].values()) == 12


def test_summary_adds_the_benchmarks_native_score():
    loaders = pytest.importorskip("videomem.eval.loaders")
    if "mlvu" not in getattr(loaders, "NATIVE_SCORES", {}):
        pytest.skip("no MLVU native score registered")
    rows = [_row("m", "a", True, category="count"), _row("m", "b", False, category="count"), _row("m", "c", True, category="order")]
    for r in rows:
        r["benchmark"] = "mlvu"
    native = summarize(rows)["methods"]["m"]["native"]["mlvu"]
    assert native["name"] == "M-Avg" and native["score"] == pytest.approx(0.75)  # mean of 50% and 100%


def test_random_guesser_scores_about_chance_and_is_seeded():
    items = [Item("toy", str(i), Path("x.mp4"), "?", OPTIONS, "ABCD"[i % 4], "c") for i in range(800)]
    guesses = [RandomMethod(seed=3).answer(item).letter for item in items]
    accuracy = sum(g == item.answer for g, item in zip(guesses, items)) / len(items)
    assert abs(accuracy - 0.25) < 0.05
    assert guesses == [RandomMethod(seed=3).answer(item).letter for item in reversed(items)][::-1]
    assert guesses != [RandomMethod(seed=4).answer(item).letter for item in items]


def test_frame_budget_equals_the_memory_loops_frames():
    assert frame_budget(600.0, config()) == 12
    assert frame_budget(3600.0, load_config(overrides={"clips.clips": 4, "clips.frames_per_clip": 16})) == 64
    # Fixed clip seconds: T grows with the video, and so does the budget.
    assert frame_budget(95.0, load_config(overrides={"clips.clip_seconds": 30, "clips.frames_per_clip": 8})) == 4 * 8


def test_context_fit():
    # 224x160 frames, factor 32 -> 7x5 = 35 patches + overhead per temporal group of 2 frames.
    per_group = 35 + FRAME_OVERHEAD_TOKENS
    kw = {"height": 160, "width": 224, "patch_factor": 32, "group": 2}
    assert frames_that_fit(64, available_tokens=None, **kw) == 64
    assert frames_that_fit(64, available_tokens=32 * per_group, **kw) == 64
    assert frames_that_fit(64, available_tokens=10 * per_group + 5, **kw) == 20
    assert frames_that_fit(64, available_tokens=per_group - 1, **kw) == 0
    assert frames_that_fit(7, available_tokens=10 * per_group, height=160, width=224, patch_factor=32) == 7
    bundled = json.loads((Path(__file__).parents[1] / "videomem/assets/default-model/config.json").read_text())
    assert context_window(bundled) == 32768 and temporal_patch(bundled) == 2
    assert context_window({"max_position_embeddings": 4096}) == 4096 and context_window({}) is None
    assert temporal_patch({"vision_config": {"patch_size": 14}}) == 1


def test_uniform_uses_the_most_frames_that_fit_and_says_so(items, tmp_path):
    backend = ScriptedBackend(reply())
    cfg = config(**{"model.max_new_tokens": 16})
    # Room for the text and about 6 frames: a 224x168 frame costs 8x6 patches (factor 28) + overhead.
    method = UniformMethod(backend, cfg, context_tokens=500)
    out = method.answer(items[0])
    assert out.extra["frame_budget"] == 12 and out.extra["budget_cut_by_context"]
    assert 1 <= out.frames == out.extra["frames_fit"] < 12
    (video_part,) = [p for p in backend.prompts[0].parts if hasattr(p, "frames")]
    assert len(video_part.frames) == out.frames and video_part.frames[0].shape[:2] == tuple(out.extra["frame_size"])
    # Uniform over the whole video: segment midpoints of [0, duration).
    n, d = out.frames, items[0].duration
    assert video_part.timestamps == pytest.approx([(k + 0.5) * d / n for k in range(n)], abs=0.01)
    assert "Clip " not in backend.prompts[0].text and "(A) red" in backend.prompts[0].text


def test_report_writes_markdown_and_plots_with_the_expected_series(items, tmp_path):
    backend = ScriptedBackend(reply())
    run_eval(items, methods(backend, tmp_path), tmp_path, config=config(), seed=1)
    path = write_report(tmp_path, tmp_path / "out")
    out = tmp_path / "out"
    assert path == out / "report.md"
    for name in ("report.md", "accuracy_vs_duration.png", "provisional_accuracy.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    text = path.read_text()
    assert "| videomem |" in text and "| uniform |" in text and "accuracy_vs_duration.png" in text

    summary = summarize(read_results(tmp_path))
    fig = plot_accuracy_vs_duration(summary)
    (ax,) = fig.axes
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert set(lines) == {"videomem", "uniform", "random"}
    # Items q0, q2 are 20 s (gold D, A); q1, q3 are 40 s (gold B, C): videomem answers D, uniform B.
    assert lines["videomem"] == [50.0, 0.0] and lines["uniform"] == [0.0, 50.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["20 s", "40 s"]

    fig = plot_provisional_accuracy(summary)
    (ax,) = fig.axes
    (line,) = ax.get_lines()  # only videomem has provisional answers
    assert line.get_label() == "videomem" and list(line.get_xdata()) == [1, 2, 3, 4]
    assert list(line.get_ydata()) == [25.0, 25.0, 25.0, 25.0]


def test_oracle_is_perfect_and_random_near_chance_on_the_synthetic_set_at_every_length(tmp_path):
    synth = pytest.importorskip("videomem.synth")
    annotation = synth.synth_command(
        tmp_path / "synth", factors=(1, 2, 4, 8, 16), videos_per_factor=8, base_seconds=60, encode=False, log=None
    )
    items = synth.load_synthetic(annotation)
    rows = run_eval(items, [OracleMethod(), RandomMethod(seed=0)], tmp_path / "run", workers=2)
    summary = summarize(rows)["methods"]
    oracle, rnd = summary["oracle"], summary["random"]
    assert oracle["accuracy"] == 1.0 and oracle["unparsed"] == 0 and oracle["errors"] == 0
    assert set(oracle["by_duration"]) == {"1x", "2x", "4x", "8x", "16x"}
    assert all(v["accuracy"] == 1.0 for v in oracle["by_duration"].values())
    # The oracle writes option text, never a letter: the parser reads every one back.
    options = {item.id: item.options for item in items}
    assert all(r["raw"] in options[r["item"]] for r in rows if r["method"] == "oracle")
    chance = sum(1 / len(item.options) for item in items) / len(items)
    sd = (chance * (1 - chance) / len(items)) ** 0.5
    assert abs(rnd["accuracy"] - chance) < 4 * sd
    for v in rnd["by_duration"].values():  # per length: wide bounds (about 50 items each), never near 1
        assert v["accuracy"] < 0.6


def test_eval_command_loads_runs_resumes_and_reports(tmp_path):
    synth = pytest.importorskip("videomem.synth")
    from videomem.eval.harness import eval_command

    synth.synth_command(tmp_path / "s", factors=(1, 2), videos_per_factor=1, base_seconds=60, encode=False, log=None)
    said: list[str] = []
    summary = eval_command("synthetic", tmp_path / "s", tmp_path / "run", config=config(), methods=["oracle", "random"], log=said.append)
    assert summary["methods"]["oracle"]["accuracy"] == 1.0 and list(summary["methods"]) == ["oracle", "random"]
    assert (tmp_path / "run" / "report" / "accuracy_vs_duration.png").exists() and said[-1].startswith("report: ")
    n = len(read_results(tmp_path / "run"))
    said.clear()
    eval_command("synthetic", tmp_path / "s", tmp_path / "run", config=config(), methods=["oracle", "random"], log=said.append)
    assert len(read_results(tmp_path / "run")) == n and not any(line.startswith("[") for line in said)  # nothing redone


def test_resuming_a_finished_run_loads_no_model_and_notes_the_resume(items, tmp_path, monkeypatch):
    backend = ScriptedBackend(reply())
    run_eval(items, ["uniform", "random"], tmp_path, config=config(), backend=backend)
    assert len(backend.prompts) == 4

    def no_model(cfg):
        raise AssertionError("a finished run must not load the model")

    monkeypatch.setattr("videomem.backends.load_backend", no_model)
    rows = run_eval(items, ["uniform", "random"], tmp_path, config=config(**{"model.device": "cpu"}), workers=2)
    assert len(rows) == 8
    header = read_header(tmp_path)
    assert header["methods"] == ["uniform", "random"] and len(header["resumed"]) == 1
    assert header["resumed"][0]["eval"]["workers"] == 2 and header["config"]["model"]["device"] == "auto"


def test_offset_and_limit_take_one_slice_and_the_slices_add_up(tmp_path):
    synth = pytest.importorskip("videomem.synth")
    from videomem.errors import ConfigError
    from videomem.eval.harness import eval_command, load_items

    synth.synth_command(tmp_path / "s", factors=(1,), videos_per_factor=2, base_seconds=60, encode=False, log=None)
    ids = [it.id for it in load_items("synthetic", tmp_path / "s")]
    run = lambda d, **kw: eval_command("synthetic", tmp_path / "s", tmp_path / d, config=config(), methods=["oracle"],
                                       report=False, log=lambda m: None, **kw)  # fmt: skip
    run("a", limit=5)
    run("b", offset=5, limit=4)
    run("c", offset=9)
    done = {d: [r["item"] for r in read_results(tmp_path / d)] for d in "abc"}
    assert done["a"] == ids[:5] and done["b"] == ids[5:9] and done["c"] == ids[9:]
    with pytest.raises(ConfigError, match="offset"):
        run("d", offset=-1)


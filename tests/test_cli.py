"""The `videomem` command as a user runs it: real subprocesses, the bundled model, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def videomem(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "videomem.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**ENV, "VIDEOMEM_HOME": str(home)},
    )


@pytest.fixture(scope="module")
def video(make_video):
    return make_video("cli.mp4", seconds=60, fps=5, width=320, height=240, gop=25)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_info_reports_the_stream(video, tmp_path):
    proc = videomem("info", str(video), "--json", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["frame_count"] == 300 and info["fps"] == pytest.approx(5.0)
    assert info["duration"] == pytest.approx(60.0, abs=0.3)
    assert (info["width"], info["height"], info["rotation"], info["codec"]) == (320, 240, 0, "h264")
    assert info["keyframe_interval"] == pytest.approx(5.0, abs=0.3) and info["keyframes"] == 12


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory):
    """A 60 s video of the synthetic benchmark (the bundled model's domain; seed never used in training) and its
    colour question."""
    from videomem.synth.generate import build_video, write_mp4
    from videomem.synth.scene import SynthSpec

    built = build_video(SynthSpec(seed=2028, length_factor=0.25))
    path = tmp_path_factory.mktemp("synthetic") / "synth60.mp4"
    write_mp4(built, path)
    return path, next(q for q in built.questions if q["family"] == "bind_colour")


def test_ask_runs_the_bundled_model_and_writes_a_resumable_trace(synthetic_video, tmp_path):
    video, q = synthetic_video
    trace = tmp_path / "t.jsonl"
    options = [arg for o in q["options"] for arg in ("-o", o)]
    proc = videomem("ask", str(video), q["question"], *options, "--json", "--trace", str(trace), home=tmp_path)
    # On a video of its own domain the bundled model writes the format the loop reads: a memory and a letter.
    # (Off its domain it may not: a gray-and-red test video once got a "C" for two options, an unreadable answer.)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] in ("A", "B", "C", "D") and out["steps"][0]["memory_after"]
    rows = [json.loads(line) for line in trace.read_text().splitlines()]
    # it reads the video as it was trained to (videomem.yaml beside its weights): 60 s clips of 16 frames of at
    # most 16,384 pixels, so this 60 s video is one clip
    assert [r["type"] for r in rows] == ["run", "step", "final"]
    clips = rows[0]["config"]["clips"]
    assert rows[0]["backend"] == "bundled" and (clips["clip_seconds"], clips["frames_per_clip"], clips["max_pixels"]) == (60, 16, 16384)
    # The same command again refuses to overwrite the finished run.
    again = videomem("ask", str(video), q["question"], *options, "--trace", str(trace), home=tmp_path)
    assert_one_line_error(again, "--resume")


def test_demo_reads_its_synthetic_video_and_shows_the_memory_timeline(tmp_path):
    proc = videomem("demo", "--workdir", str(tmp_path / "demo"), home=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "What colour was the shape shown with the word TABLE?" in proc.stdout and "Memory timeline" in proc.stdout
    rows = [json.loads(line) for line in (tmp_path / "demo" / "demo-trace.jsonl").read_text().splitlines()]
    assert [r["type"] for r in rows] == ["run"] + ["step"] * 4 + ["final"]  # 240 s: four clips
    # DEMO_SPEC's key is C (yellow); the bundled model (run 17) finds the TABLE event and answers it.
    assert "answer: C (expected C: correct)" in proc.stdout
    assert rows[-1]["answer"] == "C" and "TABLE" in rows[-1]["memory"]


def test_kill_9_then_resume_redoes_no_finished_clip(video, tmp_path):
    trace = tmp_path / "t.jsonl"
    args = ["ask", str(video), "What is shown?", "-o", "gray", "-o", "red", "--clips", "30", "-f", "4", "--max-new-tokens", "48", "--trace", str(trace)]
    proc = subprocess.Popen([sys.executable, "-m", "videomem.cli", *args], env={**ENV, "VIDEOMEM_HOME": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if trace.exists() and trace.read_text().count('"type": "step"') >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [line for line in trace.read_text().splitlines(keepends=True) if line.endswith("\n")]
    finished = sum('"type": "step"' in line for line in before)
    assert 3 <= finished < 30, "the run should have been killed mid-way"

    resumed = videomem(*args, "--resume", "--json", home=tmp_path)
    assert resumed.returncode in (0, 4), resumed.stderr
    after = trace.read_text().splitlines(keepends=True)
    assert after[: len(before)] == before  # finished clips untouched, not redone
    steps = [json.loads(line) for line in after if '"type": "step"' in line]
    assert [s["clip"] for s in steps] == list(range(30))
    assert json.loads(after[-1])["type"] == "final"


def test_ctrl_c_says_how_to_resume(video, tmp_path):
    trace = tmp_path / "t.jsonl"
    args = ["ask", str(video), "What?", "--clips", "30", "-f", "4", "--max-new-tokens", "48", "--trace", str(trace)]
    # A shell running us in the background (as CI may) ignores SIGINT, and children inherit that:
    # restore the default so the child behaves as at a terminal.
    proc = subprocess.Popen([sys.executable, "-m", "videomem.cli", *args], env={**ENV, "VIDEOMEM_HOME": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (trace.exists() and '"type": "step"' in trace.read_text()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_inputs_give_one_line_errors(video, tmp_path, media_dir):
    ask = lambda *a: videomem("ask", *a, home=tmp_path)  # noqa: E731
    assert_one_line_error(ask(str(tmp_path / "nope.mp4"), "Q?"), "not found")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    assert_one_line_error(ask(str(text), "Q?"), "notes.mp4")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(video.read_bytes()[:2000])
    assert_one_line_error(ask(str(truncated), "Q?"), "cut.mp4")
    assert_one_line_error(ask(str(video), "  "), "question is empty")
    assert_one_line_error(ask(str(video), "Q?", "--model", str(tmp_path / "no-model")), "cannot load model")
    assert_one_line_error(ask(str(video), "Q?", "--clips", "0"), "clips.clips")
    bad = tmp_path / "bad.yaml"
    bad.write_text("clips:\n  framez_per_clip: 3\n")
    assert_one_line_error(ask(str(video), "Q?", "--config", str(bad)), "framez_per_clip")
    down = tmp_path / "down.yaml"
    down.write_text(f"model:\n  backend: openai\n  model: m\n  base_url: http://127.0.0.1:{free_port()}/v1\n  retries: 1\n")
    assert_one_line_error(ask(str(video), "Q?", "--config", str(down)), "unreachable", code=3)
    assert_one_line_error(videomem("info", str(tmp_path / "nope.mp4"), home=tmp_path), "not found")


def test_serve_then_ask_through_the_openai_backend(video, tmp_path):
    """`videomem serve` with the bundled model, and `videomem ask --backend openai` against it: the
    whole HTTP path as a user runs it."""
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "videomem.cli", "serve", "--port", str(port), "--name", "tiny"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"][0]["id"] == "tiny"
        trace = tmp_path / "t.jsonl"
        proc = videomem("ask", str(video), "What is shown?", "-o", "gray", "-o", "red", "--backend", "openai",
                        "--model", "tiny", "--base-url", f"http://127.0.0.1:{port}/v1", "--max-new-tokens", "24",
                        "--json", "--trace", str(trace), home=tmp_path)
        assert proc.returncode in (0, 4), proc.stderr
        steps = json.loads(proc.stdout)["steps"]
        assert len(steps) == 4 and all(s["prompt_tokens"] > 16 * 10 for s in steps)  # the frames reached the model
        assert json.loads(trace.read_text().splitlines()[0])["backend"] == "tiny"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_synth_writes_a_benchmark_the_loader_reads(tmp_path):
    from videomem.eval.loaders import load_benchmark

    proc = videomem("synth", str(tmp_path / "syn"), "--factors", "1,2", "--videos-per-factor", "1", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    items = load_benchmark("synthetic", tmp_path / "syn")
    assert {i.duration_group for i in items} == {"1x", "2x"} and all(i.video.is_file() for i in items)
    assert len({i.category for i in items}) == 8  # every family at the base length
    assert_one_line_error(videomem("synth", str(tmp_path / "x"), "--factors", "1,two", home=tmp_path), "--factors")


def test_eval_and_report_commands(tmp_path):
    """`videomem eval` on a small synthetic set with the sanity methods, then `videomem report`."""
    assert videomem("synth", str(tmp_path / "syn"), "--factors", "1", "--videos-per-factor", "1", home=tmp_path).returncode == 0
    run = tmp_path / "run"
    proc = videomem("eval", "synthetic", str(tmp_path / "syn"), "--run-dir", str(run), "--method", "oracle",
                    "--method", "random", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "oracle: accuracy 100.0% over 8 items" in proc.stderr
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and {r["method"] for r in rows} == {"oracle", "random"}
    again = videomem("report", str(run), "--out", str(tmp_path / "rep"), home=tmp_path)
    assert again.returncode == 0 and (tmp_path / "rep" / "accuracy_vs_duration.png").is_file()
    assert "| oracle | 8 | 100.0 |" in (tmp_path / "rep" / "report.md").read_text()
    assert_one_line_error(videomem("eval", "nosuch", str(tmp_path), "--run-dir", str(run), home=tmp_path), "unknown benchmark")


def test_eval_with_the_bundled_model_resumes_after_kill_9(tmp_path):
    """The memory loop and the uniform baseline end to end on the synthetic set; kill -9 mid-run, rerun:
    every (method, item) exactly once, the rows written before the kill untouched."""
    assert videomem("synth", str(tmp_path / "syn"), "--factors", "1", "--videos-per-factor", "1", home=tmp_path).returncode == 0
    run = tmp_path / "run"
    results = run / "results.jsonl"
    args = ["eval", "synthetic", str(tmp_path / "syn"), "--run-dir", str(run), "--method", "videomem", "--method",
            "uniform", "--config", str(Path(__file__).parent.parent / "configs" / "synth.yaml"),
            "--frames-per-clip", "4", "--max-new-tokens", "8"]
    proc = subprocess.Popen([sys.executable, "-m", "videomem.cli", *args], env={**ENV, "VIDEOMEM_HOME": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (results.exists() and results.read_text().count("\n") >= 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [line for line in results.read_text().splitlines(keepends=True) if line.endswith("\n")]
    assert 3 <= len(before) < 16

    resumed = videomem(*args, home=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = results.read_text().splitlines(keepends=True)
    assert after[: len(before)] == before
    pairs = [(json.loads(line)["method"], json.loads(line)["item"]) for line in after]
    assert len(pairs) == len(set(pairs)) == 16
    assert (run / "report" / "accuracy_vs_duration.png").is_file()


def test_train_sft_from_chain_of_memory_records_then_ask_with_the_result(video, tmp_path):
    from videomem.models import build_tiny_vlm

    tiny = build_tiny_vlm("qwen2_5_vl", tmp_path / "tiny")
    data = tmp_path / "chain.jsonl"
    made = subprocess.run([sys.executable, "-m", "videomem.train.chain_data", str(data), "--videos", "1", "--factors", "1"],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert made.returncode == 0, made.stderr
    out_dir = tmp_path / "sft"
    proc = videomem("train", "sft", "--model", str(tiny), "--data", str(data), "--output-dir", str(out_dir),
                    "--max-steps", "2", "--batch-size", "2", "--save-steps", "1", home=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(m["loss"] > 0 for m in metrics)
    asked = videomem("ask", str(video), "What?", "-o", "a", "-o", "b", "--model", str(out_dir / "final"),
                     "--max-new-tokens", "8", "--json", "--trace", str(tmp_path / "t.jsonl"), home=tmp_path)
    assert asked.returncode in (0, 4), asked.stderr
    assert len(json.loads(asked.stdout)["steps"]) == 4


def test_train_prpo_on_records_and_its_config_errors(tmp_path):
    from videomem.models import build_tiny_vlm

    tiny = build_tiny_vlm("qwen3_vl", tmp_path / "tiny", text_hidden=64, vision_hidden=32)
    data = tmp_path / "chain.jsonl"
    made = subprocess.run([sys.executable, "-m", "videomem.train.chain_data", str(data), "--videos", "1", "--factors", "1",
                           "--clips", "2", "--clip-seconds", "0", "--frames-per-clip", "2"],
                          capture_output=True, text=True, env=ENV, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    out_dir = tmp_path / "prpo"
    args = ("train", "prpo", "--model", str(tiny), "--data", str(data), "--output-dir", str(out_dir), "--max-steps", "1",
            "--group-size", "2", "--examples-per-step", "1", "--max-pixels", "4096")  # fmt: skip
    proc = videomem(*args, home=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert row["step"] == 1 and "rewards/format/mean" in row and (out_dir / "final" / "model.safetensors").is_file()
    for bad, says in ((("--variant", "ppo"), "variant"), (("--data", str(tmp_path / "none.jsonl")), "no multiple-choice")):
        proc = videomem(*args, *bad, home=tmp_path)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr

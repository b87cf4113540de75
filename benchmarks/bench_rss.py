"""Peak memory of `videomem ask` over video length: the memory loop must use constant memory.

Runs the real CLI (bundled model, same clip settings: fixed clip duration, same frames per clip) on
generated videos of two lengths, in separate processes, and reads each process's peak RSS from the
kernel (wait4's ru_maxrss). Prints the growth from the short to the long video; target < 10%.

    python benchmarks/bench_rss.py                       # 10 minutes vs 3 hours (docs/performance.md)
    python benchmarks/bench_rss.py --short 2 --long 20   # quick smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from videomem.video.writer import generate_test_video

# Low resolution and frame rate keep generating a 3-hour file to a few minutes; the memory loop's own
# footprint does not depend on them (frames are resized to the pixel cap right after decoding).
WIDTH, HEIGHT, FPS, GOP = 640, 360, 2, 16  # a keyframe every 8 s


def make_video(out: Path, minutes: float) -> Path:
    path = out / f"rss-{minutes:g}min-{WIDTH}x{HEIGHT}-{FPS}fps.mp4"
    if not path.exists():
        started = time.perf_counter()
        generate_test_video(path, seconds=minutes * 60, fps=FPS, width=WIDTH, height=HEIGHT, gop=GOP)
        print(f"generated {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def peak_rss_of_ask(video: Path, args: argparse.Namespace, out: Path) -> tuple[float, float, int]:
    """(peak RSS MiB, seconds, clips) of one `videomem ask` process."""
    trace = out / f"{video.stem}.trace.jsonl"
    cmd = [
        sys.executable, "-m", "videomem.cli", "ask", str(video), "What is shown?", "-o", "gray", "-o", "red",
        "--clip-seconds", str(args.clip_seconds), "--frames-per-clip", str(args.frames_per_clip),
        "--max-new-tokens", str(args.max_new_tokens), "--trace", str(trace), "--fresh",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 4):  # 4: the answer was unreadable (a model writing off-format); the run is complete
        sys.exit(f"videomem ask failed ({code}): {proc.stderr.read().decode()[-500:]}")
    clips = trace.read_text().count('"type": "step"')
    return usage.ru_maxrss / 1024, seconds, clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=float, default=10, help="minutes of the short video")
    parser.add_argument("--long", type=float, default=180, help="minutes of the long video")
    parser.add_argument("--clip-seconds", type=float, default=60)
    parser.add_argument("--frames-per-clip", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for minutes in (args.short, args.long):
        video = make_video(args.out, minutes)
        rss, seconds, clips = peak_rss_of_ask(video, args, args.out)
        rows.append((minutes, clips, rss, seconds))

    print(f"\nvideomem ask, bundled model, {args.clip_seconds:g} s clips x {args.frames_per_clip} frames, "
          f"{WIDTH}x{HEIGHT} {FPS} fps H.264, keyframe every {GOP / FPS:g} s")
    print(f"{'video':>10} {'clips':>6} {'peak RSS MiB':>13} {'wall s':>8}")
    for minutes, clips, rss, seconds in rows:
        print(f"{minutes:>7g} min {clips:>6} {rss:>13.1f} {seconds:>8.1f}")
    growth = rows[1][2] / rows[0][2] - 1
    print(f"peak RSS growth {args.short:g} min -> {args.long:g} min: {growth:+.1%} (target < +10%)")


if __name__ == "__main__":
    main()

"""The `videomem demo` video: one video of the synthetic benchmark (docs/synthetic-benchmark.md) and one of
its questions, whose answer needs memory across clips.

It is the kind of video the default model is trained on (scripts/train_default_model.py), made with a video seed
that training never uses (training seeds are data_seed * 1_000_003 + ..., data seed >= 1), so the demo shows a
model reading a video it has not seen. The question needs a word and a colour seen together in one clip and
remembered to the end. The demo is one item, not a measurement (docs/default-model.md has those).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from videomem.synth.generate import build_video, write_mp4
from videomem.synth.scene import SynthSpec

# 240 s at 2 fps, 224x224: four 60 s clips under the bundled model's settings. Seed 2027 is the first from 2026 whose
# question's key is not (A), the answer a model gives before it has seen anything (chosen before the model was tested).
DEMO_SPEC = SynthSpec(seed=2027)
DEMO_FAMILY = "bind_colour"  # "what colour was the shape shown with the word X?": word, colour and a memory of both


@dataclass
class DemoItem:
    video: Path
    duration: float
    question: str
    options: list[str]
    answer: str  # letter


def make_demo_video(workdir: Path) -> DemoItem:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "demo.mp4"
    video = build_video(DEMO_SPEC)
    write_mp4(video, path)
    q = next(q for q in video.questions if q["family"] == DEMO_FAMILY)
    options = list(q["options"])
    return DemoItem(
        video=path,
        duration=DEMO_SPEC.duration,
        question=q["question"],
        options=options,
        answer=q["answer"],
    )

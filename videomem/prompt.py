"""The step prompt: what the model sees at clip t (method.md 1.3). Inference, the evaluator and both
trainers build prompts here and nowhere else, so the model is trained on exactly what it is asked.

Wording is an open decision of the paper; ours is short (small models have small contexts), states
the hard memory budget, and asks for timestamps in memory so answers can cite evidence.
"""

from __future__ import annotations

import numpy as np

from videomem.backends.base import Prompt, TextPart, VideoPart
from videomem.parse import format_options

SYSTEM = (
    "Watch the video clip by clip. Earlier clips are gone: only your memory keeps them. After each clip, "
    "rewrite the memory: keep the facts that help answer the question, with their times, and drop the rest. "
    "Then answer. Reply as <memory>...</memory><answer>...</answer>."
)


def format_time(seconds: float) -> str:
    """Clock time for prompts: 75.5 -> '1:15.5', 3725 -> '1:02:05'."""
    whole = int(seconds)
    frac = seconds - whole
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    tail = f"{s:02d}" + (f"{frac:.1f}"[1:] if frac >= 0.05 else "")
    return f"{h}:{m:02d}:{tail}" if h else f"{m}:{tail}"


def build_step_prompt(
    *,
    question: str,
    options: list[str] | None,
    memory: str,
    clip_index: int,
    num_clips: int | None,
    clip_start: float,
    clip_end: float,
    frames: list[np.ndarray],
    timestamps: list[float],
    memory_budget: int,
) -> Prompt:
    """Prompt for clip `clip_index` (0-based) given the memory written after the previous clip.

    num_clips is None for a live stream whose length is unknown."""
    of_total = f" of {num_clips}" if num_clips else ""
    question_block = question.strip()
    if options:
        question_block += "\n" + format_options(options)
    answer_rule = "Answer with the option letter." if options else "Answer in a few words."
    head = (
        f"Question: {question_block}\n\n"
        f"Memory (at most {memory_budget} tokens):\n{memory.strip() or '(empty)'}\n\n"
        f"Clip {clip_index + 1}{of_total}, {format_time(clip_start)}-{format_time(clip_end)}, "
        f"{len(frames)} frames:\n"
    )
    tail = f"\nRewrite the memory for the question, then answer. {answer_rule}"
    return Prompt(system=SYSTEM, parts=[TextPart(head), VideoPart(frames=frames, timestamps=timestamps), TextPart(tail)])


DIRECT_SYSTEM = (
    "You watch a video given as frames sampled across its whole length, each with its time in seconds. "
    "Answer the question from what the frames show."
)


def build_direct_prompt(
    *,
    question: str,
    options: list[str] | None,
    duration: float,
    frames: list[np.ndarray],
    timestamps: list[float],
) -> Prompt:
    """Prompt for the paper's baseline: the whole video as one set of uniformly sampled frames, answered
    in one call (no memory). Same question block and answer rule as the step prompt, so the two methods
    differ only in how the video is read."""
    question_block = question.strip()
    if options:
        question_block += "\n" + format_options(options)
    answer_rule = "Answer with the option letter." if options else "Answer in a few words."
    head = f"Question: {question_block}\n\nVideo, 0:00-{format_time(duration)}, {len(frames)} frames:\n"
    tail = f"\n{answer_rule}"
    return Prompt(system=DIRECT_SYSTEM, parts=[TextPart(head), VideoPart(frames=frames, timestamps=timestamps), TextPart(tail)])

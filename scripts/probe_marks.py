"""Per question family: how often a model marks the think block's events right, teacher-forced, on held-out text steps.

    python scripts/probe_marks.py runs/default-model-v8/text-marks/final [--videos 6] [--per-video 60] [--show 6]
    python scripts/probe_marks.py runs/exp-marks/membership/final --mark-texts 150

The steps are the text stage's (videomem.train.text_stage: the video stage's steps without frames) from held-out
videos (dataset seed 7). For each "yes" / "no" mark in their targets: does the model's most likely next token match
it, given the target up to there. --show N also prints N steps whose memory changes, token by token, each wrong
prediction as [target|predicted]. --mark-texts N scores N held-out mark texts instead (text_stage.mark_text: a
question, then events about half of which it needs, the rest near misses). docs/training-log.md, runs 8 and 12.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict

import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer

from videomem.config import ClipConfig
from videomem.synth.questions import _PATTERNS
from videomem.train.batching import IGNORE_INDEX, end_of_turn
from videomem.train.text_stage import encode_mark_text, encode_text_step, held_out_steps, mark_text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--per-video", type=int, default=60)
    ap.add_argument("--show", type=int, default=0, help="print this many steps whose memory changes, token by token")
    ap.add_argument("--mark-texts", type=int, default=0, help="score this many held-out mark texts instead of steps")
    a = ap.parse_args(argv)
    cfg = ClipConfig(clip_seconds=60, frames_per_clip=16, max_pixels=128 * 128, min_pixels=1024)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForImageTextToText.from_pretrained(a.model).eval()
    eot = end_of_turn(tok)
    marks = {tok.convert_tokens_to_ids("Ġyes"): "yes", tok.convert_tokens_to_ids("Ġno"): "no"}
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"yes": [0, 0], "no": [0, 0]})
    shown = 0
    for step in mark_texts(a.mark_texts) if a.mark_texts else held_out_steps(cfg, videos=a.videos, per_video=a.per_video):
        if isinstance(step, tuple):
            text, spans = step
            family = next(f for f, p in _PATTERNS.items() if p.fullmatch(text.split("\n")[0].removeprefix("Question: ")))
            ids, labels = encode_mark_text(tok, text, spans)
        else:
            family = next(f for f, p in _PATTERNS.items() if p.fullmatch(step.question))
            ids, labels = encode_text_step(tok, step, eot)
        with torch.no_grad():
            pred = model(input_ids=torch.tensor([ids])).logits[0, :-1].argmax(-1).tolist()
        if shown < a.show and not a.mark_texts and step.memory != step.memory_before:
            shown += 1
            start = len(ids) - len(tok(step.target + eot, add_special_tokens=False)["input_ids"])
            words = [tok.decode([ids[p]]) if labels[p] == IGNORE_INDEX or pred[p - 1] == ids[p]
                     else f"[{tok.decode([ids[p]])}|{tok.decode([pred[p - 1]])}]" for p in range(start, len(ids))]  # fmt: skip
            print(f"{step.question} {step.options}\nmemory before: {step.memory_before!r}\n{''.join(words)}\n")
        for p in range(1, len(ids)):
            if (mark := marks.get(labels[p])) is not None:
                counts[family][mark][0] += int(pred[p - 1] == ids[p])
                counts[family][mark][1] += 1
    total = {m: [sum(c[m][i] for c in counts.values()) for i in (0, 1)] for m in ("yes", "no")}
    for family, c in sorted(counts.items()) + [("all", total)]:
        print(f"{family:12s} yes {c['yes'][0]}/{c['yes'][1]}  no {c['no'][0]}/{c['no'][1]}")


def mark_texts(n: int) -> list[tuple[str, list[tuple[int, int]]]]:
    rng = random.Random("videomem-mark-texts-eval")  # not the training stream's seed string
    return [mark_text(rng) for _ in range(n)]


if __name__ == "__main__":
    main()

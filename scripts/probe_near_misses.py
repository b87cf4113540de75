"""How often a model marks near misses right, teacher-forced, on the video steps of held-out videos.

    python scripts/probe_near_misses.py videomem/assets/default-model [--videos 40]
    python scripts/probe_near_misses.py runs/v35/checkpoint-1000 --base runs/v33/final

A near miss is an event the think block marks "no" that shares a name with the question (chain_data.near_miss_marks:
'red circle with SHIP' under 'How many times was a red diamond shown?'). The steps are stage 2's (plain wording,
think block with marks, facts timed by their clip) from held-out videos (dataset seed 7, never trained on), with
their frames; for each near miss, the model gets the target up to the mark and the script checks whether its most
likely next token is "no". Counts per family, event kind and shared name (colour, shape, word, code); the "yes"
marks are counted beside them. --show FAMILY prints each of that family's marks, right or wrong, in its context.
docs/training-log.md, session 15.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

import torch
from probe_perception import model_dir

from videomem.backends.hf import HFBackend
from videomem.config import ClipConfig, load_config
from videomem.synth.generate import dataset_specs
from videomem.train.batching import IGNORE_INDEX, encode_example
from videomem.train.chain_data import _DESCRIBE_BODIES, build_synthetic, near_miss_marks
from videomem.train.sft import examples_from_records

# an event as the think block names it, read back: each of describe_event's fields as a named group
EVENT_NAMES = {kind: re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>\\w+)", body)) for kind, body in _DESCRIBE_BODIES.items()}


def shared_names(event: str, question: str) -> str:
    """The event's kind and which of its names the question names: 'shape event, colour' for 'red circle with SHIP'
    under 'How many times was a red diamond shown?', 'code event, -' for a code the question does not name."""
    asked = {w.lower() for w in re.findall(r"\w+", question)}
    kind, m = next((k, p.fullmatch(event)) for k, p in EVENT_NAMES.items() if p.fullmatch(event))
    return f"{kind} event, " + ("+".join(k for k, v in m.groupdict().items() if v.lower() in asked) or "-")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model directory, or a checkpoint with --base")
    ap.add_argument("--base", type=Path, default=None)
    ap.add_argument("--videos", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7, help="dataset seed of the held-out videos")
    ap.add_argument("--show", default=None, help="print each mark of this family: right or wrong, the memory before, "
                    "the think block up to the mark")  # fmt: skip
    a = ap.parse_args(argv)
    path = model_dir(a.model, a.base)
    backend = HFBackend(str(path), device="cpu", dtype="float32")
    clips = load_config(None, {"model.model": str(path)}).clips  # the model's reading settings (videomem.yaml)
    cfg = ClipConfig(clip_seconds=60, frames_per_clip=clips.frames_per_clip, max_pixels=clips.max_pixels,
                     min_pixels=clips.min_pixels)  # fmt: skip
    records = build_synthetic(dataset_specs(a.seed, (1,), a.videos), cfg, plain=True, observe=True, mark=True,
                              clip_times=True)  # fmt: skip
    tok = backend.tokenizer
    right: Counter = Counter()
    total: Counter = Counter()
    family = {}
    examples = []
    for rec in records:
        family[rec["id"]] = rec["family"]
        examples += [ex for ex in examples_from_records([rec]) if near_miss_marks(ex.step) or ": yes" in ex.target]
    for ex in examples:
        inputs = encode_example(backend, ex, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
        n_prompt = int((inputs["labels"][0] == IGNORE_INDEX).sum())
        offsets = tok(ex.target, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        with torch.no_grad():
            logits = backend.model(**{k: v for k, v in inputs.items() if k != "labels"}).logits[0]
        think_start = ex.target.index("<think>") + len("<think>")
        near = near_miss_marks(ex.step)
        marks = re.finditer(r": yes\b", ex.step.observed.strip())
        yes = [(think_start + m.end() - 3, think_start + m.end()) for m in marks]
        for spans, want in ((near, "no"), (yes, "yes")):
            for s, e in spans:
                j = next(i for i, (x, y) in enumerate(offsets) if x < e and y > s)  # the mark's token
                predicted = tok.decode([int(logits[n_prompt + j - 1].argmax())]).strip()
                event = ex.target[think_start : s - 2].rsplit("; ", 1)[-1]
                key = (family[ex.step.record_id], want, shared_names(event, ex.step.question))
                total[key] += 1
                right[key] += predicted == want
                if a.show == key[0]:
                    print(f"{'right' if predicted == want else 'WRONG'} {ex.step.question} | memory before "
                          f"{ex.step.memory_before!r} | {ex.target[think_start:e]}")  # fmt: skip
    for key in sorted(total):
        fam, mark, names = key
        print(f"{fam:11s} {mark:3s} {names:26s} {right[key]}/{total[key]}")


if __name__ == "__main__":
    main()

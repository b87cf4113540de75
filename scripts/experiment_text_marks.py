"""Experiment (docs/training-log.md, run 7): can the language model learn the think block's marks from text alone?

    python scripts/experiment_text_marks.py runs/default-model-v7/copy/final --minutes 8

Run 7's video stage never learned to mark an event "yes" (the question needs it): 0 of 60 after 1,100 steps. This
trains the model's language part alone, from `MODEL`, on texts "Question: ... (A) ... Seen: <the marked think block>"
built from the stage-2 records of dataset seed 1 (200 videos at 1x). Every 100 steps it prints the teacher-forced
accuracy of the yes and no marks on held-out texts (dataset seed 7, 6 videos). Nothing is saved: it only measures
whether dense text supervision teaches the choice.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer

from videomem.config import ClipConfig
from videomem.parse import format_options
from videomem.synth.generate import dataset_specs
from videomem.train.chain_data import build_synthetic
from videomem.train.copy_stage import text_batch


def marked_texts(seed: int, videos: int) -> list[str]:
    cfg = ClipConfig(clip_seconds=60, frames_per_clip=16)
    records = build_synthetic(dataset_specs(seed, (1.0,), videos), cfg, plain=True, observe=True, mark=True, clip_times=True)
    return [
        f"Question: {r['question']}\n{format_options(r['options'])}\nSeen: {s['observed']}"
        for r in records
        for s in r["steps"]
        if s["observed"] != "nothing"
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--minutes", type=float, default=8.0)
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    train, held = marked_texts(1, 200), marked_texts(7, 6)[:150]
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForImageTextToText.from_pretrained(a.model, dtype=torch.float32)
    marks = {tok.convert_tokens_to_ids("Ġyes"): "yes", tok.convert_tokens_to_ids("Ġno"): "no"}

    def accuracy() -> str:
        hits, totals = dict.fromkeys(("yes", "no"), 0), dict.fromkeys(("yes", "no"), 0)
        model.eval()
        with torch.no_grad():
            for text in held:
                ids = tok(text, return_tensors="pt")["input_ids"]
                pred = model(input_ids=ids).logits[0, :-1].argmax(-1)
                for p in range(1, ids.shape[1]):
                    if (mark := marks.get(int(ids[0, p]))) is not None:
                        hits[mark] += int(pred[p - 1] == ids[0, p])
                        totals[mark] += 1
        model.train()
        return ", ".join(f"{m} {hits[m]}/{totals[m]}" for m in hits)

    print(f"{len(train)} training texts; marks before: {accuracy()}", flush=True)
    params = [p for n, p in model.named_parameters() if "visual" not in n]
    opt = torch.optim.AdamW(params, lr=6e-4)
    rng, t0, step = random.Random(0), time.time(), 0
    while time.time() - t0 < a.minutes * 60:
        step += 1
        loss = model(**text_batch(tok, [rng.choice(train) for _ in range(32)])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:
            print(f"step {step} ({time.time() - t0:.0f} s) loss {loss.item():.3f}; marks: {accuracy()}", flush=True)
    print(f"final, step {step}: marks {accuracy()}")


if __name__ == "__main__":
    main()

"""Experiment (docs/training-log.md, "Next" 1): is "does the question's key occur among the events" easier to learn
from the key's side (a lookup after the events) than from each event's side (the think block's marks)?

    python scripts/experiment_lookup_marks.py runs/default-model-v10/copy/final --minutes 6
    python scripts/experiment_lookup_marks.py runs/default-model-v10/copy/final --minutes 20 --arms keyed

Arms from the same weights (the language part alone), the same minutes and the same texts
(text_stage.mark_text's questions and events):
- marks: the events, each followed by ": yes" / ": no" (loss on the marks);
- lookup: the events unmarked, then " | " and one line per key of the question (its word, code, colour and shape,
  or each option), "KEY: seen" or "KEY: not seen" (loss on seen / not);
- keyed: as marks, with the question's keys written beside each event ("red circle with SHIP vs PEAR: no"), so the
  decision compares nearby tokens instead of searching the question (the keys are given, without a loss: this
  measures the comparison alone).
Each arm prints, on 300 held-out texts, teacher-forced accuracy of its decisions split by the right answer (needed
or not for marks, present or absent for lookups). Nothing is saved.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer

from videomem.synth.questions import FAMILIES
from videomem.train.chain_data import describe_event
from videomem.train.text_stage import (
    encode_mark_text,
    mark_event,
    mark_question,
    marked_think,
    pad_batch,
    question_head,
)


def matches(kind: str, key, ev) -> bool:
    """Whether event `ev` shows the question's key (a code, a word, or a (colour, shape) pair)."""
    if kind == "codes":
        return ev.kind == "code" and ev.code == key
    if kind == "words":
        return ev.kind == "shape" and ev.word == key
    return ev.kind == "shape" and (ev.colour, ev.shape) == key


def texts(rng: random.Random) -> dict[str, tuple[str, list]]:
    """Each arm's text and its decision spans, over one question and one event list.
    A span is (start, end, right answer is positive)."""
    family = rng.choice(list(FAMILIES))
    question, options, keys = mark_question(family, rng)
    events = [mark_event(keys, rng) for _ in range(rng.randint(3, 9))]
    marks, spans = marked_think(family, question, options, events)
    m_spans = [(a, b, marks[a:b] == " yes") for a, b in spans]
    keyed, k_spans = question_head(question, options), []
    key_text = " ".join(x if isinstance(x, str) else " ".join(x) for kind in keys for x in keys[kind])
    for k, ((a, b, positive), ev) in enumerate(zip(m_spans, events)):
        keyed += ("; " if k else "") + f"{describe_event(ev)} vs {key_text}:"
        k_spans.append((len(keyed), len(keyed) + b - a, positive))
        keyed += marks[a:b]
    lookup, l_spans = question_head(question, options) + "; ".join(describe_event(ev) for ev in events) + " |", []
    for kind, key in [(k, x) for k in ("codes", "words", "combos") for x in keys.get(k, [])]:
        seen = any(matches(kind, key, ev) for ev in events)
        lookup += f" {key if kind != 'combos' else ' '.join(key)}:"
        l_spans.append((len(lookup), len(lookup) + len(" seen" if seen else " not"), seen))
        lookup += " seen;" if seen else " not seen;"
    return {"marks": (marks, m_spans), "lookup": (lookup + "</think>", l_spans), "keyed": (keyed + "</think>", k_spans)}


def accuracy(model, tok, held: list[tuple[str, list]]) -> str:
    right = {True: [0, 0], False: [0, 0]}
    model.eval()
    with torch.no_grad():
        for text, spans in held:
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"]
            pred = model(input_ids=torch.tensor([ids])).logits[0, :-1].argmax(-1).tolist()
            for a, b, positive in spans:
                p = next(i for i, (s, e) in enumerate(enc["offset_mapping"]) if s < b and e > a)
                right[positive][0] += int(pred[p - 1] == ids[p])
                right[positive][1] += 1
    model.train()
    return f"positive {right[True][0]}/{right[True][1]}, negative {right[False][0]}/{right[False][1]}"


def run_arm(model_dir: str, arm: str, minutes: float, batch: int = 32) -> None:
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    params = [p for n, p in model.named_parameters() if "visual" not in n]
    opt = torch.optim.AdamW(params, lr=6e-4, weight_decay=0.0)
    rng, held_rng = random.Random("lookup-train"), random.Random("lookup-held-out")
    held = [texts(held_rng)[arm] for _ in range(300)]
    name = arm
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    print(f"[{name}] before: {accuracy(model, tok, held)}", flush=True)
    deadline, step = time.time() + minutes * 60, 0
    while time.time() < deadline:
        step += 1
        rows = []
        for _ in range(batch):
            text, spans = texts(rng)[arm]
            rows.append(encode_mark_text(tok, text, [(a, b) for a, b, _ in spans]))
        loss = model(**pad_batch(rows, pad)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 200 == 0:
            print(f"[{name}] step {step} loss {loss.item():.3f}: {accuracy(model, tok, held)}", flush=True)
    print(f"[{name}] end, step {step}: {accuracy(model, tok, held)}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--minutes", type=float, default=6.0, help="per arm")
    ap.add_argument("--arms", nargs="+", choices=("marks", "lookup", "keyed"), default=["marks", "lookup"])
    a = ap.parse_args(argv)
    for arm in a.arms:
        run_arm(a.model, arm, a.minutes)


if __name__ == "__main__":
    main()

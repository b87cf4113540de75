"""Experiment (docs/training-log.md, "Next" 1): is "does the question's key occur among the events" easier to learn
from the key's side (a lookup after the events) than from each event's side (the think block's marks)?

    python scripts/experiment_lookup_marks.py runs/default-model-v10/copy/final --minutes 6
    python scripts/experiment_lookup_marks.py runs/default-model-v10/copy/final --minutes 20 --arms keyed
    python scripts/experiment_lookup_marks.py runs/default-model-v10/copy/final --minutes 15 --arms marks --lr 1.5e-4
    python scripts/experiment_lookup_marks.py runs/default-model-v10/copy/final --copy-first runs/exp-copy-lookups \
        --copy-minutes 10 --lookup-share 0.75 --minutes 8 --arms letters
    python scripts/experiment_lookup_marks.py runs/exp-copy-lookups-30/final --copy-first runs/exp-copy-lookups-prompt \
        --copy-minutes 12 --lookup-share 0.75 --prompt-layout 0.5 --minutes 8 --decay --arms letters

Arms from the same weights (the language part alone), the same minutes and the same texts
(text_stage.mark_text's questions and events):
- marks: the events, each followed by ": yes" / ": no" (loss on the marks);
- lookup: the events unmarked, then " | " and one line per key of the question (its word, code, colour and shape,
  or each option), "KEY: seen" or "KEY: not seen" (loss on seen / not);
- keyed: as marks, with the question's keys written beside each event ("red circle with SHIP vs PEAR: no"), so the
  decision compares nearby tokens instead of searching the question (the keys are given, without a loss: this
  measures the comparison alone).
- letters: as marks, but an event matching an option is marked with that option's letter ("purple diamond with KEY:
  A") instead of "yes", in the families whose keys are options (needle, order, bind_code, absent): the decision
  becomes the copy stage's lookup "text -> its letter" (learned only after lookup-heavy copy training in the step
  prompt's layout: --copy-first ... --prompt-layout 0.5; training-log, session 8).
- header: as letters, after a header that lists the question's keys each followed by its mark ("<think> KEY: A;
  SHIP: B; ... | "; given, without a loss), so an event's mark is what followed its key earlier: a forward copy after
  a match (an induction head), which the copy stage teaches, instead of a test for whether the key occurs.
Each arm prints, on 300 held-out texts, teacher-forced accuracy of its decisions split by the right answer (needed
or not for marks, present or absent for lookups) and by where the key is (an option, or the question's sentence).
Nothing is saved, except the further copy stage of --copy-first (lookups first: docs/training-log.md, session 8).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer

from videomem.parse import LETTERS
from videomem.synth.questions import FAMILIES
from videomem.train.chain_data import describe_event
from videomem.train.copy_stage import train_copy
from videomem.train.text_stage import (
    encode_mark_text,
    mark_event,
    mark_question,
    marked_think,
    pad_batch,
    question_head,
)

OPTION_KEYED = ("needle", "order", "bind_code", "absent")  # families whose keys are the options


def matches(kind: str, key, ev) -> bool:
    """Whether event `ev` shows the question's key (a code, a word, or a (colour, shape) pair)."""
    if kind == "codes":
        return ev.kind == "code" and ev.code == key
    if kind == "words":
        return ev.kind == "shape" and ev.word == key
    return ev.kind == "shape" and (ev.colour, ev.shape) == key


def texts(rng: random.Random) -> dict[str, tuple[str, list]]:
    """Each arm's text and its decision spans, over one question and one event list.
    A span is (start, end, label): the label says whether the right answer is positive and where the key is."""
    family = rng.choice(list(FAMILIES))
    question, options, keys = mark_question(family, rng)
    events = [mark_event(keys, rng) for _ in range(rng.randint(3, 9))]
    marks, spans = marked_think(family, question, options, events)
    where = "option" if family in OPTION_KEYED else "question"
    m_spans = [(a, b, f"{where} {'+' if marks[a:b] == ' yes' else '-'}") for a, b in spans]
    letters, n_spans = question_head(question, options), []
    for k, ((a, b, label), ev) in enumerate(zip(m_spans, events)):
        key = ev.code if ev.kind == "code" else ev.word
        mark = f" {LETTERS[options.index(key)]}" if where == "option" and label.endswith("+") else marks[a:b]
        letters += ("; " if k else "") + f"{describe_event(ev)}:"
        n_spans.append((len(letters), len(letters) + len(mark), label))
        letters += mark
    header = question_head(question, options) + " " + "; ".join(
        f"{key if isinstance(key, str) else ' '.join(key)}: {LETTERS[options.index(key)] if where == 'option' else 'yes'}"
        for kind in keys for key in keys[kind]) + " | "
    shift = len(header) - len(question_head(question, options))
    h_spans = [(a + shift, b + shift, label) for a, b, label in n_spans]
    keyed, k_spans = question_head(question, options), []
    key_text = " ".join(x if isinstance(x, str) else " ".join(x) for kind in keys for x in keys[kind])
    for k, ((a, b, label), ev) in enumerate(zip(m_spans, events)):
        keyed += ("; " if k else "") + f"{describe_event(ev)} vs {key_text}:"
        k_spans.append((len(keyed), len(keyed) + b - a, label))
        keyed += marks[a:b]
    lookup, l_spans = question_head(question, options) + "; ".join(describe_event(ev) for ev in events) + " |", []
    for kind, key in [(k, x) for k in ("codes", "words", "combos") for x in keys.get(k, [])]:
        seen = any(matches(kind, key, ev) for ev in events)
        lookup += f" {key if kind != 'combos' else ' '.join(key)}:"
        l_spans.append((len(lookup), len(lookup) + len(" seen" if seen else " not"), f"{where} {'+' if seen else '-'}"))
        lookup += " seen;" if seen else " not seen;"
    return {"marks": (marks, m_spans), "lookup": (lookup + "</think>", l_spans), "keyed": (keyed + "</think>", k_spans),
            "letters": (letters + "</think>", n_spans),
            "header": (header + letters[len(question_head(question, options)):] + "</think>", h_spans)}


def accuracy(model, tok, held: list[tuple[str, list]]) -> str:
    right = {label: [0, 0] for label in ("option +", "option -", "question +", "question -")}
    model.eval()
    with torch.no_grad():
        for text, spans in held:
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"]
            pred = model(input_ids=torch.tensor([ids])).logits[0, :-1].argmax(-1).tolist()
            for a, b, label in spans:
                p = next(i for i, (s, e) in enumerate(enc["offset_mapping"]) if s < b and e > a)
                right[label][0] += int(pred[p - 1] == ids[p])
                right[label][1] += 1
    model.train()
    return ", ".join(f"{label} {r}/{n}" for label, (r, n) in right.items())


def run_arm(model_dir: str, arm: str, minutes: float, lr: float = 6e-4, warmup: int = 1, decay: bool = False,
            batch: int = 32) -> None:
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    params = [p for n, p in model.named_parameters() if "visual" not in n]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    deadline = time.time() + minutes * 60
    left = lambda: max(0.0, deadline - time.time()) / (minutes * 60)  # share of the budget still to run
    # warm-up: Adam's first steps are the largest; decay (cosine over the time budget): the copy stage's lookups only
    # rose once its learning rate decayed (training-log, session 8)
    factor = lambda s: min(1.0, (s + 1) / warmup) * (0.5 * (1 + math.cos(math.pi * (1 - left()))) if decay else 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rng, held_rng = random.Random("lookup-train"), random.Random("lookup-held-out")
    held = [texts(held_rng)[arm] for _ in range(300)]
    name = arm
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    print(f"[{name}] before: {accuracy(model, tok, held)}", flush=True)
    step = 0
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
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 200 == 0:
            print(f"[{name}] step {step} loss {loss.item():.3f}: {accuracy(model, tok, held)}", flush=True)
    print(f"[{name}] end, step {step}: {accuracy(model, tok, held)}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--minutes", type=float, default=6.0, help="per arm")
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--warmup", type=int, default=1, help="steps of linear learning-rate warm-up")
    ap.add_argument("--decay", action="store_true", help="cosine learning-rate decay over each arm's minutes")
    ap.add_argument("--copy-first", type=Path, default=None, metavar="OUT",
                    help="first train the copy stage further from MODEL into OUT (videomem.train.copy_stage, with "
                         "--lookup-share), then run the arms from its weights")
    ap.add_argument("--copy-minutes", type=float, default=10.0)
    ap.add_argument("--lookup-share", type=float, default=0.75, help="share of the copy texts that are lookups")
    ap.add_argument("--prompt-layout", type=float, default=0.0,
                    help="share of the copy stage's option texts laid out as the step prompt (copy_text)")
    ap.add_argument("--arms", nargs="+", choices=("marks", "lookup", "keyed", "letters", "header"), default=["marks", "lookup"])
    a = ap.parse_args(argv)
    model = a.model
    if a.copy_first is not None:
        mix = {"lookup_share": a.lookup_share, "prompt_layout": a.prompt_layout}
        model = str(train_copy(a.model, a.copy_first, minutes=a.copy_minutes, copy_mix=mix, warmup=20))
    for arm in a.arms:
        run_arm(model, arm, a.minutes, a.lr, a.warmup, a.decay)


if __name__ == "__main__":
    main()

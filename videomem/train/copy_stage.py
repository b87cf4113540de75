"""Text-only copy training for a language model trained from scratch: teach it to copy from its context before it
learns the memory task.

Why: every step of the memory loop copies (the previous memory into the new one, the question's subject into an
empty-memory line, an option's text into the conclusion). A tiny model trained from random weights on the memory
records alone never learned to copy: after 600 steps of the memory task its teacher-forced accuracy on the words it
had to copy was 0 of 107, and it predicted 6% of the content of a list it had just read when the list came again
(scripts/probe_copy.py; docs/training-log.md, run 5). Copying needs induction heads, which form quickly on text that repeats itself
and hardly at all when repeats are rare. So this stage trains the language model alone (no frames: ~20x faster per
token than the video steps) on short texts built from the synthetic videos' vocabulary, whose second half repeats or
looks up their first half.

Sequences (each a few dozen tokens; the loss covers every token, as in language-model pretraining):
- a list of items, then the same list again;
- lettered options, then letters asked again with their texts ("(C) blue"), or texts with their letters ("blue (C)");
- facts "word SHIP: red circle", then some of them again by their word;
- with filtered_share, items each marked "yes" or "no", then every "yes" item again in order ("kept: ..."): the
  memory step's own copy, which keeps exactly the events its think block marked "yes" (session 9: with the marks
  right, the memory kept one of two or three "yes" events, or one marked "no").
Content copy (copy_accuracy) measures the forward copies. The lookups by text ("blue (" -> "C") are measured apart
(lookup_accuracy): they are the reverse direction, the one the think block's marks need (is this event's word among
the question's?), and 8 minutes with a quarter of the texts left them at chance (docs/training-log.md, session 8);
lookup_share gives them more of the texts.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from videomem.parse import format_options
from videomem.synth.scene import CODE_DIGITS, CODE_LETTERS, COLOURS, SHAPES, WORDS
from videomem.train.sft import copy_model_files


def _item(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.choice(WORDS)
    if kind == 1:
        return f"{rng.choice(list(COLOURS))} {rng.choice(SHAPES)}"
    if kind == 2:
        return rng.choice(CODE_LETTERS) + rng.choice(CODE_DIGITS) + rng.choice(CODE_LETTERS)
    if kind == 3:
        return f"{rng.randrange(60)}:{rng.randrange(60):02d}"
    return str(rng.randrange(1, 40))


_QUESTIONS = ("Which of these was shown?", "Which of these words was shown first?", "Which of these was never shown?")


def one_line_options(options: list[str]) -> str:
    """'(A) x (B) y ...': the copy texts' own option layout (the step prompt's is parse.format_options)."""
    return " ".join(f"({'ABCD'[i]}) {o}" for i, o in enumerate(options))


def copy_text(
    rng: random.Random, lookup_share: float | None = None, prompt_layout: float = 0.0, filtered_share: float = 0.0
) -> str:
    """One training text whose second half (after the last newline) can only be predicted by copying from its first
    half. lookup_share: the share of texts that look options up by their text (None: a quarter, each kind equally
    often, drawn as runs 4-13 drew them). prompt_layout: the share of option texts laid out as the step prompt lays
    them out (a question line, then one option per line: parse.format_options) instead of on one line; a lookup
    learned in one layout is not one in the other (docs/training-log.md, session 8). filtered_share: the share of
    texts that copy only the items marked "yes" (drawn first; at 0 the other kinds are drawn as before)."""
    if filtered_share and rng.random() < filtered_share:
        items = list(dict.fromkeys(_item(rng) for _ in range(rng.randint(2, 8))))
        marks = [rng.random() < 0.4 for _ in items]
        kept = [it for it, yes in zip(items, marks) if yes]
        return ("marked: " + "; ".join(f"{it}: {'yes' if yes else 'no'}" for it, yes in zip(items, marks))
                + "\nkept: " + ("; ".join(kept) or "nothing"))  # fmt: skip
    kind = rng.randrange(4) if lookup_share is None else 2 if rng.random() < lookup_share else rng.choice((0, 1, 3))
    if kind == 0:
        items = [_item(rng) for _ in range(rng.randint(3, 12))]
        return "list: " + "; ".join(items) + "\nagain: " + "; ".join(items)
    if kind in (1, 2):  # lettered options, then asked by letter, or by text (the letter after it: looked up)
        options = list(dict.fromkeys(_item(rng) for _ in range(4)))
        asked = [rng.randrange(len(options)) for _ in range(rng.randint(2, 6))]
        pair = (lambda i: f"({'ABCD'[i]}) {options[i]}") if kind == 1 else (lambda i: f"{options[i]} ({'ABCD'[i]})")
        if prompt_layout and rng.random() < prompt_layout:
            head = f"Question: {rng.choice(_QUESTIONS)}\n" + format_options(options)
        else:
            head = one_line_options(options)
        return head + "\n" + " ".join(map(pair, asked))
    words = rng.sample(WORDS, rng.randint(2, 8))
    facts = {w: f"{rng.choice(list(COLOURS))} {rng.choice(SHAPES)}" for w in words}
    asked = [rng.choice(words) for _ in range(rng.randint(2, 6))]
    return "; ".join(f"word {w}: {facts[w]}" for w in words) + "\n" + "; ".join(f"word {w}: {facts[w]}" for w in asked)


def text_batch(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    """Language-model inputs for `texts`: right-padded ids, attention mask, labels on every real token."""
    rows = [tokenizer(t)["input_ids"] for t in texts]
    width = max(map(len, rows))
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in rows])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": (labels != -100).long(),
        "labels": labels,
    }


_FORMAT = "list: again: ; (A) (B) (C) (D) word : \n"  # what the second half holds besides copied content


def copy_accuracy(model, tokenizer, texts: list[str]) -> float:
    """Share of the second half's content tokens (after the last newline; not punctuation, list words or option
    letters, which the format alone predicts or which are drawn at random) the model predicts right."""
    fmt = set(tokenizer(_FORMAT)["input_ids"]) | {tokenizer.convert_tokens_to_ids(c) for c in "ABCD"}
    hits = total = 0
    model.eval()
    with torch.no_grad():
        for text in texts:
            head, _ = text.rsplit("\n", 1)
            n_head = len(tokenizer(head + "\n")["input_ids"])
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            pred = model(input_ids=ids).logits[0, :-1].argmax(-1)
            for p in range(n_head, ids.shape[1]):
                if int(ids[0, p]) not in fmt:
                    hits += int(pred[p - 1] == ids[0, p])
                    total += 1
    model.train()
    return hits / max(total, 1)


def lookup_accuracy(model, tokenizer, texts: list[str]) -> tuple[int, int]:
    """(right, total) over the looked-up letters of the texts that ask options back by their text ("(A) blue ...\n
    blue (A)"): the letter after each " (" of the second half. Chance is a quarter."""
    open_paren, right, total = tokenizer.convert_tokens_to_ids("Ġ("), 0, 0
    model.eval()
    with torch.no_grad():
        for text in texts:
            head, asked = text.rsplit("\n", 1)
            if "(A)" not in head or asked.startswith("("):
                continue  # a list, facts, or options asked by letter
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            n_head = len(tokenizer(head + "\n")["input_ids"])
            pred = model(input_ids=ids).logits[0].argmax(-1)
            for p in (ids[0, :-1] == open_paren).nonzero().flatten().tolist():
                if p >= n_head:
                    right += int(pred[p] == ids[0, p + 1])
                    total += 1
    model.train()
    return right, total


def train_copy(
    model_dir: str | Path,
    out: str | Path,
    *,
    minutes: float,
    sec_per_step: float = 0.66,
    max_steps: int | None = None,
    batch_size: int = 32,
    lr: float = 6e-4,
    warmup: int = 50,
    seed: int = 0,
    copy_mix: dict | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train `model_dir`'s language model on copy texts (copy_text with the keyword arguments `copy_mix`) for about
    `minutes` (max_steps from `sec_per_step` unless given; a time guard stops early), and save the whole model (vision
    tower untouched) to out/final. Done if out/final exists."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    out = Path(out)
    final = out / "final"
    if (final / "config.json").is_file():
        log(f"[copy] done: {final}")
        return final
    torch.manual_seed(seed)
    rng = random.Random(f"videomem-copy/{seed}")
    held_out = [copy_text(random.Random(f"videomem-copy-eval/{i}")) for i in range(60)]
    lookups = [copy_text(random.Random(f"videomem-copy-eval/{i}"), 1.0, i % 2) for i in range(30)]  # both layouts
    scores = lambda n=60: (f"copy accuracy {copy_accuracy(model, tokenizer, held_out[:n]):.3f}, looked-up letters "
                           "{}/{}".format(*lookup_accuracy(model, tokenizer, lookups[: n // 2])))  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    params = [p for n, p in model.named_parameters() if "visual" not in n]  # the vision tower keeps stage 1's weights
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    max_steps = max_steps or max(20, int(minutes * 60 / sec_per_step))
    schedule = lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, max_steps) / max_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    log(f"[copy] max_steps {max_steps} (budget {minutes} min), batch {batch_size}, lr {lr}, texts "
        f"{copy_mix or 'as runs 4-13'}; before: {scores()}")  # fmt: skip
    deadline, t0 = time.time() + minutes * 60, time.time()
    for step in range(1, max_steps + 1):
        texts = [copy_text(rng, **(copy_mix or {})) for _ in range(batch_size)]
        loss = model(**text_batch(tokenizer, texts)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == max_steps or time.time() > deadline:
            log(f"[copy] step {step}/{max_steps} loss {loss.item():.3f} {scores(20)} "
                f"({(time.time() - t0) / step:.2f} s/step)")  # fmt: skip
        if time.time() > deadline:
            log(f"[copy] time budget spent at step {step}")
            break
    log(f"[copy] after: {scores()}")
    model.save_pretrained(final)
    copy_model_files(Path(model_dir), final)
    return final

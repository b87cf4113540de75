"""Text-only training of a step's text operations, before the model learns them from video.

Why: a step of the memory task (records built with observe=True, mark=True) first names what the clip shows (the
think block), marks each thing "yes" or "no" (does the question need it), then rewrites the memory and answers. Only
the naming needs the video; the rest is text work on what was named. Trained from video steps alone, a tiny model
never learned the marks (every event marked "no" after 1,100 steps; docs/training-log.md, run 7), while the same
weights learned part of them from text alone in minutes, until they memorised their fixed set of texts. So this
stage trains exactly the video stage's steps without the frames: the step prompt is the one inference builds, its
video part left out; the target is the same; the loss skips the names of the clip's events (which only the frames
could tell) and covers everything after them: the marks, the memory and the answer. Every batch comes from freshly
generated synthetic videos (seeds >= FRESH_SEED_BASE, never an evaluation seed), so nothing can be memorised.
Copy texts (videomem.train.copy_stage) are mixed in, so the copying learned there is kept. Two knobs for the marks,
which are rare ("yes" is one mark in eight, in a fifth of the steps): `mark_weight` counts the mark tokens that many
times in the loss, `keep_without_yes` thins out the steps without a "yes" (run 8: 0.1 moved every family, x8 weights
alone only the most frequent one). A third, `mark_share`: short mark texts (`mark_text`: a question, then a think
block of events about half of which it needs, the rest near misses), many marks per token, "yes" as common as "no".
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from videomem.backends.base import Prompt, TextPart
from videomem.config import ClipConfig
from videomem.parse import LETTERS
from videomem.synth.questions import FAMILIES, QUARTERS
from videomem.synth.scene import CODE_DIGITS, CODE_LETTERS, COLOURS, SHAPES, WORDS, Event, SynthSpec
from videomem.train.batching import IGNORE_INDEX, end_of_turn
from videomem.train.chain_data import (
    Step,
    describe_event,
    question_fields,
    record_to_steps,
    relevant,
    synthetic_records,
)
from videomem.train.copy_stage import copy_text
from videomem.train.sft import copy_model_files

FRESH_SEED_BASE = 10**8  # video seeds for fresh texts: far above every dataset_specs seed (< 10**7 for seeds 0..9)
MARK = re.compile(r": (yes|no)(?=; |$)")


def fresh_steps(
    rng: random.Random, clip_config: ClipConfig, factors: tuple[float, ...], keep_without_yes: float = 1.0
) -> Iterator[Step]:
    """An endless shuffled stream of marked steps from new videos (buffer of ~2,000 steps, refilled one video at a
    time, drawn at random so steps of one video spread out). keep_without_yes: the share of steps with no "yes"
    mark that are kept (most steps have none: lower it to make "yes" marks common in every family)."""
    buffer: list[Step] = []
    while True:
        while len(buffer) < 2000:
            spec = SynthSpec(seed=FRESH_SEED_BASE + rng.randrange(10**8), length_factor=rng.choice(factors))
            for record in synthetic_records(spec, clip_config, plain=True, observe=True, mark=True, clip_times=True):
                buffer.extend(s for s in record_to_steps(record)
                              if ": yes" in (s.observed or "") or rng.random() < keep_without_yes)  # fmt: skip
        i = rng.randrange(len(buffer))
        buffer[i], buffer[-1] = buffer[-1], buffer[i]
        yield buffer.pop()


def _code(rng: random.Random) -> str:
    return rng.choice(CODE_LETTERS) + rng.choice(CODE_DIGITS) + rng.choice(CODE_LETTERS)


def mark_question(family: str, rng: random.Random) -> tuple[str, list[str], dict]:
    """A question of `family` in the generator's wording (videomem.synth.questions), its options, and the keys a
    relevant event matches (for near misses)."""
    colour, shape, word = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(WORDS)
    if family in ("needle", "bind_code"):
        codes = list(dict.fromkeys(_code(rng) for _ in range(4)))
        q = "Which of these codes was shown in the video?" if family == "needle" else f"Which of these codes was written in {colour}?"
        return q, codes, {"codes": codes} | ({} if family == "needle" else {"colour": colour})
    if family == "temporal":
        c = _code(rng)
        return f"In which part of the video was the code {c} shown?", list(QUARTERS), {"codes": [c]}
    if family in ("count", "bind_word"):
        q = (f"How many times was a {colour} {shape} shown?" if family == "count"
             else f"Which word was shown with the {colour} {shape}?")  # fmt: skip
        options = [str(n) for n in range(rng.randint(1, 6), 100)][:4] if family == "count" else rng.sample(WORDS, 4)
        return q, options, {"combos": [(colour, shape)]}
    if family == "bind_colour":
        return f"What colour was the shape shown with the word {word}?", rng.sample(list(COLOURS), 4), {"words": [word]}
    words = rng.sample(WORDS, 4)
    q = "Which of these words was never shown?" if family == "absent" else f"Which of these words was shown {rng.choice(['first', 'last'])}?"
    return q, words, {"words": words}


def mark_event(keys: dict, rng: random.Random) -> Event:
    """An event that matches one of the question's keys, half the time; else a near miss (one attribute of a key
    kept, another changed) or any event."""
    kind = "code" if "codes" in keys else "shape"
    if rng.random() < 0.2:
        kind = "shape" if kind == "code" else "code"
    colour, shape, word = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(WORDS)
    if kind == "code":
        c = rng.choice(keys["codes"]) if "codes" in keys else _code(rng)
        if rng.random() < 0.5:  # near miss: one character changed
            i = rng.randrange(3)
            c = c[:i] + rng.choice(CODE_DIGITS if i == 1 else CODE_LETTERS) + c[i + 1 :]
        if "colour" in keys and rng.random() < 0.5:  # bind_code: the asked colour half the time
            colour = keys["colour"]
        return Event(0, 1, "code", colour, code=c)
    if "combos" in keys:
        colour, shape = keys["combos"][0]
        if rng.random() < 0.5:  # near miss: the colour or the shape changed
            colour, shape = (rng.choice(list(COLOURS)), shape) if rng.random() < 0.5 else (colour, rng.choice(SHAPES))
    elif "words" in keys and rng.random() < 0.5:
        word = rng.choice(keys["words"])
    return Event(0, 1, "shape", colour, shape=shape, word=word)


def mark_text(rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    """A short text for the marks alone: a question of a random family with its options, then a think block of
    events, each marked "yes" or "no" by the rule the memory records use (chain_data.relevant), with about half of
    them "yes" and the rest near misses that share an attribute with what the question asks about. Returns the
    text and the character spans of its marks (the only tokens with a loss: the events are random)."""
    family = rng.choice(list(FAMILIES))
    question, options, keys = mark_question(family, rng)
    events = [mark_event(keys, rng) for _ in range(rng.randint(3, 9))]
    return marked_think(family, question, options, events)


def question_head(question: str, options: list[str]) -> str:
    """'Question: ...', the lettered options, and the opening think tag: how a mark text begins."""
    return f"Question: {question}\n" + "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options)) + "\n<think>"


def marked_think(family: str, question: str, options: list[str], events: list[Event]) -> tuple[str, list[tuple[int, int]]]:
    """The mark text of `events` under `question`, and the character spans of its marks."""
    fields = question_fields(family, question)
    text, spans = question_head(question, options), []
    for k, ev in enumerate(events):
        text += ("; " if k else "") + describe_event(ev) + ":"
        mark = " yes" if relevant(family, fields, options, ev) else " no"
        spans.append((len(text), len(text) + len(mark)))
        text += mark
    return text + "</think>", spans


def text_prompt(step: Step) -> Prompt:
    """The step's inference prompt (Step.prompt: same text, frame count and times) without its video part."""
    full = step.prompt([None] * len(step.clip.timestamps))  # the frames only count here: the video part is dropped
    return Prompt(system=full.system, parts=[p for p in full.parts if isinstance(p, TextPart)])


def unseen_spans(step: Step) -> list[tuple[int, int]]:
    """Character spans of the target that only the frames could tell: each event's name in the think block (or the
    word "nothing"), not its mark."""
    target, observed = step.target, step.observed or ""
    start = target.index("<think>") + len("<think>") if observed else 0
    spans, pos = [], 0
    for m in MARK.finditer(observed):
        spans.append((start + pos, start + m.start()))
        pos = m.end() + 2  # skip "; "
    if observed and not spans:  # "nothing"
        spans.append((start, start + len(observed)))
    return spans


def frame_spans(step: Step) -> list[tuple[int, int]]:
    """Character spans of the target that the frames decide: the think block's event names, the separators between
    them and its end (whether another event follows), not the marks. Stage 2's loss on video steps
    (scripts/train_default_model.py) when the rest is left to this stage."""
    target = step.target
    if not step.observed:
        return []
    pos, end = target.index("<think>") + len("<think>"), target.index("</think>") + len("</think>")
    spans = []
    for m in MARK.finditer(target, pos, end - len("</think>")):
        spans.append((pos, m.start() + 1))  # the name and its colon
        pos = m.end()
    return spans + [(pos, end)]


def encode_text_step(tokenizer, step: Step, eot: str) -> tuple[list[int], list[int]]:
    """(ids, labels) of one step: the prompt rendered by the chat template, then the target; labels on the target
    except the event names."""
    prompt = text_prompt(step)
    messages = [{"role": "system", "content": [{"type": "text", "text": prompt.system}]},
                {"role": "user", "content": [{"type": "text", "text": prompt.text}]}]  # fmt: skip
    head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    enc = tokenizer(step.target + eot, add_special_tokens=False, return_offsets_mapping=True)
    spans = unseen_spans(step)
    labels = [
        IGNORE_INDEX if any(a < e and b > s for s, e in spans) else t
        for t, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])
    ]
    return prompt_ids + enc["input_ids"], [IGNORE_INDEX] * len(prompt_ids) + labels


def encode_mark_text(tokenizer, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """(ids, labels) of a mark text: labels on the mark tokens only."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [t if any(a < e and b > s for s, e in spans) else IGNORE_INDEX
              for t, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])]  # fmt: skip
    return enc["input_ids"], labels


def pad_batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    return {
        "input_ids": torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in rows]),
        "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows]),
        "labels": torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for _, lab in rows]),
    }


def weighted_loss(model, batch: dict[str, torch.Tensor], marks: torch.Tensor, mark_weight: float) -> torch.Tensor:
    """Mean cross-entropy over the labelled tokens, the mark tokens (`marks`: the ids of " yes" and " no") counted
    `mark_weight` times: a mark is one token of ~60 in a target, and "yes" one mark in eight."""
    labels = batch["labels"][:, 1:]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                                           reduction="none")  # fmt: skip
    weight = torch.where(torch.isin(labels.flatten(), marks), mark_weight, 1.0)
    return (ce * weight).sum() / (labels != IGNORE_INDEX).sum()


def step_accuracy(model, tokenizer, steps: list[Step], eot: str) -> dict[str, tuple[int, int]]:
    """Teacher-forced (right, total) per part of the target: yes marks, no marks, memory tokens, the answer letter, and
    memories that differ from the one before, counted right when every token is."""
    yes, no = tokenizer.convert_tokens_to_ids("Ġyes"), tokenizer.convert_tokens_to_ids("Ġno")
    counts = {k: [0, 0] for k in ("yes", "no", "memory", "answer", "changed memory")}
    model.eval()
    with torch.no_grad():
        for step in steps:
            ids, labels = encode_text_step(tokenizer, step, eot)
            pred = model(input_ids=torch.tensor([ids])).logits[0, :-1].argmax(-1).tolist()
            text = tokenizer.decode(ids)
            mem_open = len(tokenizer(text[: text.rindex("<memory>")], add_special_tokens=False)["input_ids"])
            ans_open = len(tokenizer(text[: text.rindex("<answer>") + len("<answer>")], add_special_tokens=False)["input_ids"])
            memory_exact = True
            for p in range(1, len(ids)):
                if labels[p] == IGNORE_INDEX:
                    continue
                part = ("yes" if ids[p] == yes else "no" if ids[p] == no else None) if p < mem_open else (
                    "memory" if p < ans_open - 1 else "answer" if p == ans_open else None)  # fmt: skip
                if part is not None:
                    right = pred[p - 1] == ids[p]
                    counts[part][0] += int(right)
                    counts[part][1] += 1
                    memory_exact &= right or part != "memory"
            if step.memory != step.memory_before:
                counts["changed memory"][0] += int(memory_exact)
                counts["changed memory"][1] += 1
    model.train()
    return {k: (v[0], v[1]) for k, v in counts.items()}


def held_out_steps(clip_config: ClipConfig, videos: int = 3, seed: int = 7, per_video: int = 40) -> list[Step]:
    """Steps of held-out videos (dataset seed `seed`, the evaluation set's), a fixed sample of each video's."""
    from videomem.synth.generate import dataset_specs

    rng, out = random.Random("videomem-text-stage-eval"), []
    for spec in dataset_specs(seed, (1.0,), videos):
        steps = [s for r in synthetic_records(spec, clip_config, plain=True, observe=True, mark=True, clip_times=True)
                 for s in record_to_steps(r)]  # fmt: skip
        out += rng.sample(steps, min(per_video, len(steps)))
    return out


def draw_row(rng: random.Random, tokenizer, stream: Iterator[Step], eot: str, copy_share: float,
             mark_share: float, copy_mix: dict | None = None):  # fmt: skip
    """One training row (input ids, labels) of the text stage: a copy text (loss on all of it; copy_mix: copy_text's
    keyword arguments), a mark text, or the next step of `stream`, drawn with those shares."""
    draw = rng.random()
    if draw < copy_share:
        ids = tokenizer(copy_text(rng, **(copy_mix or {})), add_special_tokens=False)["input_ids"]
        return ids, ids
    if draw < copy_share + mark_share:
        return encode_mark_text(tokenizer, *mark_text(rng))
    return encode_text_step(tokenizer, next(stream), eot)


def train_text_stage(
    model_dir: str | Path,
    out: str | Path,
    *,
    minutes: float,
    clip_config: ClipConfig,
    factors: tuple[float, ...] = (1.0, 1.0, 2.0, 4.0, 8.0),
    sec_per_step: float = 1.8,  # measured on 2 cores, batch 24 (docs/training-log.md, run 8)
    max_steps: int | None = None,
    batch_size: int = 24,
    copy_share: float = 0.15,
    copy_mix: dict | None = None,
    mark_share: float = 0.0,
    mark_weight: float = 1.0,
    keep_without_yes: float = 1.0,
    lr: float = 6e-4,
    warmup: int = 50,
    seed: int = 0,
    eval_every: int = 200,
    log: Callable[[str], None] = print,
) -> Path:
    """Train `model_dir`'s language model on fresh text steps for about `minutes` (a time guard stops early), and
    save the whole model (vision tower untouched) to out/final. Done if out/final exists. copy_mix: the
    mixed-in copy texts' kinds (copy_stage.copy_text's keyword arguments): as the copy stage drew them, so the
    lookups it taught keep being trained."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    out = Path(out)
    final = out / "final"
    if (final / "config.json").is_file():
        log(f"[text] done: {final}")
        return final
    torch.manual_seed(seed)
    rng = random.Random(f"videomem-text-stage/{seed}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    eot = end_of_turn(tokenizer)
    held = held_out_steps(clip_config)
    stream = fresh_steps(rng, clip_config, factors, keep_without_yes)
    params = [p for n, p in model.named_parameters() if "visual" not in n]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    max_steps = max_steps or max(20, int(minutes * 60 / sec_per_step))
    schedule = lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, max_steps) / max_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    marks = torch.tensor([tokenizer.convert_tokens_to_ids(t) for t in ("Ġyes", "Ġno")])

    def report() -> str:
        acc = step_accuracy(model, tokenizer, held, eot)
        return ", ".join(f"{k} {r}/{n}" for k, (r, n) in acc.items())

    log(f"[text] max_steps {max_steps} (budget {minutes} min), batch {batch_size}, lr {lr}; before: {report()}")
    deadline, t0 = time.time() + minutes * 60, time.time()
    for step in range(1, max_steps + 1):
        rows = [draw_row(rng, tokenizer, stream, eot, copy_share, mark_share, copy_mix)
                for _ in range(batch_size)]  # fmt: skip
        loss = weighted_loss(model, pad_batch(rows, pad), marks, mark_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        over = time.time() > deadline
        if step % eval_every == 0 or step == max_steps or over:
            log(f"[text] step {step}/{max_steps} loss {loss.item():.3f} ({(time.time() - t0) / step:.2f} s/step); "
                f"held-out: {report()}")  # fmt: skip
        elif step % 50 == 0:
            log(f"[text] step {step}/{max_steps} loss {loss.item():.3f}")
        if over:
            log(f"[text] time budget spent at step {step}")
            break
    model.save_pretrained(final)
    copy_model_files(Path(model_dir), final)
    return final


"""The text stage: video steps without their frames, loss on everything but the names of what the clip shows."""

import dataclasses
import random
import re

import pytest
import torch
from safetensors.torch import load_file

from videomem.config import ClipConfig
from videomem.models import build_tiny_vlm
from videomem.synth.generate import dataset_specs
from videomem.synth.questions import _PATTERNS, FAMILIES
from videomem.synth.scene import Event
from videomem.train.batching import IGNORE_INDEX, end_of_turn
from videomem.train.chain_data import question_fields, relevant
from videomem.train.text_stage import (
    FRESH_SEED_BASE,
    draw_row,
    encode_mark_text,
    encode_text_step,
    frame_spans,
    fresh_steps,
    held_out_steps,
    mark_text,
    step_accuracy,
    text_prompt,
    train_text_stage,
)

CFG = ClipConfig(clip_seconds=60, frames_per_clip=16)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_vlm("qwen3_vl", tmp_path_factory.mktemp("text") / "m", text_hidden=64, vision_hidden=32)


@pytest.fixture(scope="module")
def tok(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


def drop_names(think: str) -> str:
    return "" if think == "nothing" else re.sub(r"(^|; )[^;:]+(?=: (yes|no))", r"\1", think)


def test_labels_cover_marks_memory_and_answer_but_not_what_only_the_frames_show(tok):
    stream = fresh_steps(random.Random(0), CFG, (1.0, 2.0))
    eot = end_of_turn(tok)
    for _ in range(60):
        step = next(stream)
        ids, labels = encode_text_step(tok, step, eot)
        n_prompt = len(ids) - len(tok(step.target + eot, add_special_tokens=False)["input_ids"])
        assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
        # the event names drop out of the labelled text; marks, separators, memory and answer stay
        names_out = re.sub(r"(?<=<think>)[^<]*(?=</think>)", lambda m: drop_names(m.group()), step.target)
        assert tok.decode([t for t in labels if t != IGNORE_INDEX]).replace(" ", "") == (names_out + eot).replace(" ", "")
        prompt = tok.decode(ids[:n_prompt])
        assert text_prompt(step).text in prompt and "<|video_pad|>" not in prompt
        assert f"Clip {step.index + 1} of {step.num_clips}" in prompt and step.question in prompt
    # a clip that shows nothing: "nothing" is not labelled, the rest is
    empty = dataclasses.replace(step, observed="nothing")
    ids, labels = encode_text_step(tok, empty, eot)
    assert tok.decode([t for t in labels if t != IGNORE_INDEX]) == empty.target.replace("nothing", "") + eot


def test_fresh_videos_never_share_a_seed_with_the_datasets():
    from videomem.train import text_stage

    drawn = []
    real = text_stage.synthetic_records
    text_stage.synthetic_records = lambda spec, *a, **k: drawn.append(spec.seed) or real(spec, *a, **k)
    try:
        stream = fresh_steps(random.Random(1), CFG, (1.0,))
        [next(stream) for _ in range(10)]
    finally:
        text_stage.synthetic_records = real
    dataset_seeds = {s.seed for d in range(10) for s in dataset_specs(d, (1, 2, 4, 8, 16), 999)}
    assert len(drawn) > 20 and min(drawn) >= FRESH_SEED_BASE and not dataset_seeds & set(drawn)
    assert max(dataset_seeds) < FRESH_SEED_BASE


def test_train_text_stage_learns_the_text_operations_and_leaves_the_vision_tower(tiny, tok, tmp_path):
    from transformers import AutoModelForImageTextToText

    held = held_out_steps(CFG, videos=1, per_video=12)
    eot = end_of_turn(tok)

    def memory_acc(model_dir):
        acc = step_accuracy(AutoModelForImageTextToText.from_pretrained(model_dir), tok, held, eot)
        assert acc["memory"][1] > 100 and acc["answer"][1] == len(held)
        return acc["memory"][0] / acc["memory"][1]

    before = memory_acc(tiny)
    logs = []
    final = train_text_stage(tiny, tmp_path / "text", minutes=5, clip_config=CFG, factors=(1.0,), max_steps=80,
                             batch_size=8, lr=3e-3, warmup=10, eval_every=80, log=logs.append)  # fmt: skip
    after = memory_acc(final)
    assert after > before + 0.2, (before, after)
    old, new = load_file(tiny / "model.safetensors"), load_file(final / "model.safetensors")
    for name in old:
        assert torch.equal(old[name], new[name]) == ("visual" in name), name
    assert any(m.startswith("[text] step 80/80") and "held-out" in m for m in logs)
    logs.clear()
    assert train_text_stage(tiny, tmp_path / "text", minutes=5, clip_config=CFG, log=logs.append) == final
    assert logs == [f"[text] done: {final}"]


def test_rows_follow_their_shares_and_copy_texts_follow_the_copy_stage_settings(tok):
    rng, eot = random.Random(3), end_of_turn(tok)
    stream = iter(held_out_steps(CFG, videos=1, per_video=40))
    decode = lambda ids: tok.decode(ids, skip_special_tokens=True)
    for _ in range(20):  # lookups in the step prompt's layout only: a question line, one option per line
        ids, labels = draw_row(rng, tok, stream, eot, 1.0, 0.0, {"lookup_share": 1.0, "prompt_layout": 1.0})
        assert labels == ids
        assert re.match(r"Question: .*\n\(A\) .*\n\(B\) ", decode(ids)), decode(ids)
    default_layouts = {decode(draw_row(rng, tok, stream, eot, 1.0, 0.0)[0]).startswith("Question:") for _ in range(40)}
    assert default_layouts == {False}
    for _ in range(10):  # no copy texts: steps from the stream, their prompts left out of the loss
        ids, labels = draw_row(rng, tok, stream, eot, 0.0, 0.0)
        assert labels[0] == IGNORE_INDEX and labels != ids


def test_keep_without_yes_makes_yes_marks_common():
    def share(keep):
        stream = fresh_steps(random.Random(2), CFG, (1.0,), keep_without_yes=keep)
        steps = [next(stream) for _ in range(400)]
        return sum(": yes" in s.observed for s in steps) / len(steps)

    everything, thinned = share(1.0), share(0.1)
    assert everything < 0.6 and thinned > 0.85, (everything, thinned)  # measured: 0.48, 0.91


def test_frame_spans_leave_out_exactly_the_marks():
    stream = fresh_steps(random.Random(1), CFG, (1.0,), keep_without_yes=0.5)
    steps = [next(stream) for _ in range(40)]
    for step in steps + [dataclasses.replace(steps[0], observed="nothing")]:
        target = step.target
        think = target[: target.index("</think>") + len("</think>")]
        kept = "".join(target[a:b] for a, b in frame_spans(step))
        left_out = think.removeprefix("<think>")
        assert re.sub(r" (yes|no)(?=; |</think>)", "", left_out) == kept


def parse_event(name: str) -> Event:
    if name.startswith("code "):
        _, code, _, colour = name.split()
        return Event(0, 1, "code", colour, code=code)
    colour, shape, _, word = name.split()
    return Event(0, 1, "shape", colour, shape=shape, word=word)


def test_mark_texts_mark_by_the_records_rule_with_yes_as_common_as_no(tok):
    rng = random.Random(5)
    marks, families, near_misses = [], set(), 0
    for _ in range(400):
        text, spans = mark_text(rng)
        question, rest = text.removeprefix("Question: ").split("\n", 1)
        options = [line[4:] for line in rest.split("\n")[:4]]
        family = next(f for f, p in _PATTERNS.items() if p.fullmatch(question))
        families.add(family)
        think = text[text.index("<think>") + len("<think>") : text.index("</think>")]
        names = [re.sub(r": (yes|no)$", "", item) for item in think.split("; ")]
        assert [text[a:b] for a, b in spans] == [" " + item.rsplit(" ", 1)[1] for item in think.split("; ")]
        for name, (a, b) in zip(names, spans):
            ev = parse_event(name)
            needed = relevant(family, question_fields(family, question), options, ev)
            marks.append(needed)
            assert text[a:b] == (" yes" if needed else " no"), (question, name)
            near_misses += not needed and ev.kind == "shape" and family in ("count", "bind_word") and (
                ev.colour in question or ev.shape in question)  # fmt: skip
        # only the marks carry the loss
        _, labels = encode_mark_text(tok, text, spans)
        assert tok.decode([t for t in labels if t != IGNORE_INDEX]).split() == [text[a:b].strip() for a, b in spans]
    assert families == set(FAMILIES)
    assert 0.35 < sum(marks) / len(marks) < 0.6, sum(marks) / len(marks)  # measured: 0.44
    assert near_misses > 50


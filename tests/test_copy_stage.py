"""The copy stage: texts whose second half is a copy or a lookup of the first, and the text-only trainer."""

import random
import re

import pytest
import torch
from safetensors.torch import load_file

from videomem.models import build_tiny_vlm
from videomem.train.copy_stage import copy_accuracy, copy_text, lookup_accuracy, train_copy


def _segments(half: str) -> list[str]:
    half = re.sub(r"^(list|again): ", "", half)
    if re.search(r"\([A-D]\)$", half):  # texts with their letters after them: "blue (C) 12 (A)"
        return [f"({m[1]}) {m[0]}" for m in re.findall(r"(.+?) \(([A-D])\)(?: |$)", half)]
    return [s for s in re.split(r"; | (?=\([A-D]\) )", half) if s]


def test_the_second_half_only_repeats_or_looks_up_the_first():
    kinds = set()
    for i in range(300):
        text = copy_text(random.Random(i))
        head, tail = text.split("\n")
        assert set(_segments(tail)) <= set(_segments(head)), text
        kinds.add(tail.split(" ", 1)[0] if tail.startswith(("again", "word")) else
                  "letter after" if tail.endswith(")") else "option")  # fmt: skip
    assert kinds == {"again:", "word", "option", "letter after"}


def _kind(text: str) -> str:
    tail = text.split("\n")[1]
    return "lookup" if tail.endswith(")") and not tail.startswith("(") else "other"


def test_lookup_share_sets_how_many_texts_look_options_up_by_text():
    share = lambda s: sum(_kind(copy_text(random.Random(i), s)) == "lookup" for i in range(400)) / 400
    assert share(1.0) == 1.0 and share(0.0) == 0.0
    assert 0.65 < share(0.75) < 0.85 and 0.18 < share(None) < 0.32


def test_prompt_layout_lays_the_options_out_as_the_step_prompt_does():
    from videomem.parse import format_options

    for i in range(50):
        text = copy_text(random.Random(i), lookup_share=1.0, prompt_layout=1.0)
        question, *lines, asked = text.split("\n")
        assert question.startswith("Question: ") and len(lines) >= 1
        options = [line.split(") ", 1)[1] for line in lines]
        assert "\n".join(lines) == format_options(options)
        assert set(_segments(asked)) <= {f"({'ABCD'[k]}) {o}" for k, o in enumerate(options)}
    assert "\n" not in copy_text(random.Random(0), lookup_share=1.0).split("\n", 1)[1]  # default: one line


def test_filtered_texts_copy_exactly_the_items_marked_yes_in_order():
    seen = set()
    for i in range(200):
        text = copy_text(random.Random(i), filtered_share=1.0)
        head, tail = text.split("\n")
        assert head.startswith("marked: ") and tail.startswith("kept: ")
        pairs = [item.rsplit(": ", 1) for item in head[len("marked: "):].split("; ")]
        kept = [name for name, mark in pairs if mark == "yes"]
        assert {mark for _, mark in pairs} <= {"yes", "no"}
        assert tail[len("kept: "):] == ("; ".join(kept) or "nothing"), text
        seen.add(len(kept) > 1 if kept else "none")
    assert seen == {True, False, "none"}  # several kept, one kept, none kept
    assert not any(copy_text(random.Random(i), filtered_share=0.0).startswith("marked:") for i in range(200))


class _Oracle(torch.nn.Module):
    """Predicts every next token of its input right, except `wrong` at the positions listed in `miss`."""

    def __init__(self, miss: set[int], wrong: int):
        super().__init__()
        self.miss, self.wrong = miss, wrong

    def forward(self, input_ids):
        nxt = torch.cat([input_ids[0, 1:], input_ids[0, -1:]])
        nxt = torch.tensor([self.wrong if p in self.miss else int(t) for p, t in enumerate(nxt)])
        return type("Out", (), {"logits": torch.nn.functional.one_hot(nxt, 2000).float()[None]})


def test_lookup_accuracy_scores_only_the_letters_looked_up_in_the_second_half(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    text = "(A) blue (B) KEY (C) 12 (D) R4Z\nKEY (B) R4Z (D) 12 (C)"
    ids = tok(text, return_tensors="pt")["input_ids"]
    paren = (ids[0] == tok.convert_tokens_to_ids("Ġ(")).nonzero().flatten().tolist()
    assert len(paren) == 6  # three in the options, three asked back
    assert lookup_accuracy(_Oracle(set(), 0), tok, [text]) == (3, 3)
    # a miss at a looked-up letter counts; one at an option's letter (first half) does not
    assert lookup_accuracy(_Oracle({paren[4], paren[0]}, 0), tok, [text]) == (2, 3)
    # texts of the other kinds are not scored
    assert lookup_accuracy(_Oracle(set(), 0), tok, ["list: a; b\nagain: a; b"]) == (0, 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_vlm("qwen3_vl", tmp_path_factory.mktemp("copy") / "m", text_hidden=64, vision_hidden=32)


def test_train_copy_teaches_copying_and_leaves_the_vision_tower(tiny, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    texts = [copy_text(random.Random(f"test/{i}")) for i in range(30)]
    before = copy_accuracy(AutoModelForImageTextToText.from_pretrained(tiny), tok, texts)
    logs = []
    final = train_copy(tiny, tmp_path / "copy", minutes=5, max_steps=150, batch_size=16, lr=3e-3, warmup=10, log=logs.append)
    after = copy_accuracy(AutoModelForImageTextToText.from_pretrained(final), tok, texts)
    assert after > before + 0.15, (before, after)
    old, new = load_file(tiny / "model.safetensors"), load_file(final / "model.safetensors")
    assert old.keys() == new.keys()
    for name in old:
        same = torch.equal(old[name], new[name])
        assert same == ("visual" in name), name  # the vision tower untouched, every language weight trained
    assert (final / "tokenizer.json").is_file() and any("step 150/150" in m for m in logs)
    # done: a rerun returns the saved model without training
    logs.clear()
    assert train_copy(tiny, tmp_path / "copy", minutes=5, log=logs.append) == final and logs == [f"[copy] done: {final}"]

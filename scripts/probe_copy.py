"""Can a model copy from its context? Two teacher-forced measures on held-out data (dataset seed 7, or --data-seed).

    python scripts/probe_copy.py runs/default-model/final
    python scripts/probe_copy.py runs/default-model/checkpoint-600 --base runs/default-model/copy/final

1. copy texts (videomem.train.copy_stage.copy_text, seeds never used in training): the share of the second half's
   content tokens predicted right (copy_accuracy): 0 for a model without induction heads. Then, of those texts
   that ask options back by their text ("blue (C)"), the share of looked-up letters predicted right: copy_accuracy
   leaves letters out, and a forward copy does not give them (the letter comes before the text it is found by);
   chance is 0.25. And the same lookup ("KEY (" -> its letter, 100 questions of 4 words) with the options laid out
   three ways: on one line as the copy texts have them, one per line after a question line as the step prompt has
   them, and one per line alone (a lookup learned in one layout need not work in another: training-log, session 8).
2. question records of --videos held-out 1x videos in the stage-2 format (plain wording, think block, clip-start
   times): the share of target tokens predicted right, by part of the target: the think block (naming what the clip
   shows), the memory, and the memory's subject words (upper-case words: the question's word, or an option's), which
   must be copied from the prompt or named from the clip; and, at clips 1 (empty memory before), the memory's first
   token, which says whether the clip holds what the question asks ("No ..." or "[0:00] ..."; "count 0" or
   "[0:00] ..."), split by whether it does: the choice of what to remember.
   Then, per family, the steps whose think block marks an event "yes" (the memory must change) with every memory
   token right, and for the others where the first wrong token is: an entry left out (a new line's "[" expected,
   the answer line or the next field predicted: the model stops before its last "yes" event), an entry added, a
   word or code miscopied (an upper-case word or a code's character), the count or answer line ("count 3",
   "so far: ..."), other.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections import Counter
from pathlib import Path

import torch

from videomem.backends.hf import HFBackend
from videomem.config import load_config
from videomem.parse import LETTERS, format_options
from videomem.synth.generate import dataset_specs
from videomem.synth.scene import WORDS
from videomem.train.batching import SFTExample, encode_example
from videomem.train.chain_data import record_to_steps, step_frames, synthetic_records
from videomem.train.copy_stage import copy_accuracy, copy_text, lookup_accuracy, one_line_options
from videomem.train.sft import export_checkpoint

_ASKED = "Which of these words was shown first?"
LAYOUTS = {
    "on one line (copy texts)": lambda opts: one_line_options(opts) + "\n",
    "one per line after a question (step prompt)": lambda opts: f"Question: {_ASKED}\n{format_options(opts)}\n",
    "one per line, no question": lambda opts: format_options(opts) + "\n",
}


def lookups_by_layout(backend: HFBackend, n: int = 100) -> dict[str, int]:
    """Right looked-up letters of `n` (a word, then " (": its letter next) for each option layout of LAYOUTS."""
    right = {}
    for name, layout in LAYOUTS.items():
        rng, right[name] = random.Random("videomem-lookup-layout"), 0
        for _ in range(n):
            opts, k = rng.sample(WORDS, 4), rng.randrange(4)
            ids = backend.tokenizer(layout(opts) + f"{opts[k]} (", return_tensors="pt")["input_ids"]
            with torch.no_grad():
                top = int(backend.model(input_ids=ids).logits[0, -1].argmax())
            right[name] += backend.tokenizer.decode([top]).strip() == LETTERS[k]
    return right


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model directory, or a trainer checkpoint directory with --base")
    ap.add_argument("--base", type=Path, default=None)
    ap.add_argument("--videos", type=int, default=3, help="held-out videos for part 2 (0: part 1 only)")
    ap.add_argument("--mark", action="store_true", help="think blocks mark what the question needs (run 7 on)")
    ap.add_argument("--data-seed", type=int, default=7,
                    help="dataset seed of part 2's videos: 7 is held out; the training script's (1) compares with them")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    path = a.model
    if not (path / "config.json").is_file():
        if a.base is None:
            raise SystemExit(f"{path} is not a model directory; pass --base <the model it was trained from>")
        path = export_checkpoint(path, a.base, Path(tempfile.mkdtemp()))
    backend = HFBackend(str(path))
    texts = [copy_text(random.Random(f"videomem-copy-probe/{i}")) for i in range(100)]
    print(f"copy texts: content-token accuracy {copy_accuracy(backend.model, backend.tokenizer, texts):.3f}")
    print("copy texts: looked-up letters {}/{}".format(*lookup_accuracy(backend.model, backend.tokenizer, texts)))
    for layout, right in lookups_by_layout(backend).items():
        print(f"lookups, options {layout}: {right}/100")
    if not a.videos:
        return

    clips = load_config(None, {"model.model": str(path)}).clips
    hits, totals = Counter(), Counter()
    exact, changed, first_wrong = Counter(), Counter(), Counter()
    for spec in dataset_specs(a.data_seed, (1.0,), a.videos):
        for rec in synthetic_records(spec, clips, plain=True, observe=True, mark=a.mark, clip_times=True):
            for step in record_to_steps(rec):
                example = SFTExample(step, lambda ts, rec=rec, step=step: step_frames(rec, step))
                enc = encode_example(backend, example, min_pixels=clips.min_pixels, max_pixels=clips.max_pixels)
                labels = enc.pop("labels")[0]
                with torch.no_grad():
                    pred = backend.model(**enc).logits[0].argmax(-1)
                part, first = "think", step.index == 0
                evidence = "evidence" if step.index == 0 and not step.memory.startswith(("No ", "count 0")) else "none"
                memory_tokens = []  # (target token, predicted token) of the memory's body
                for p in (labels[1:] != -100).nonzero().flatten().tolist():
                    token = backend.tokenizer.decode([int(labels[p + 1])])
                    part = "memory" if "<memory" in token else "answer" if "answer" in token else part
                    right = int(pred[p] == labels[p + 1])
                    hits[part] += right
                    totals[part] += 1
                    if part == "think" and token.strip() in ("yes", "no"):
                        hits[f"think: marks ({token.strip()})"] += right
                        totals[f"think: marks ({token.strip()})"] += 1
                    if part == "memory" and first and "<memory" not in token and token != ">":
                        hits[f"clip 1, first memory token ({evidence})"] += right
                        totals[f"clip 1, first memory token ({evidence})"] += 1
                        first = False
                    if part == "memory" and token.strip().isupper() and len(token.strip()) > 2:
                        hits["memory: subject words"] += right
                        totals["memory: subject words"] += 1
                    if part == "memory" and "<memory" not in token and token != ">":
                        memory_tokens.append((token, backend.tokenizer.decode([int(pred[p])])))
                if a.mark and ": yes" in (step.observed or ""):
                    changed[rec["family"]] += 1
                    wrong = next((k for k, (want, got) in enumerate(memory_tokens) if want != got), None)
                    if wrong is None:
                        exact[rec["family"]] += 1
                    else:
                        first_wrong[memory_error(memory_tokens, wrong)] += 1
    parts = ("think", "think: marks (yes)", "think: marks (no)", "memory", "memory: subject words", "answer",
             "clip 1, first memory token (evidence)", "clip 1, first memory token (none)")  # fmt: skip
    for part in parts:
        print(f"question steps, {part}: {hits[part]}/{totals[part]} = {hits[part] / max(totals[part], 1):.3f}")
    if changed:
        print("steps marking a 'yes', memory body all right: " + ", ".join(
            f"{family} {exact[family]}/{changed[family]}" for family in sorted(changed)) +
            f"; all {sum(exact.values())}/{sum(changed.values())}")  # fmt: skip
        print("first wrong memory token: " + ", ".join(f"{kind} {n}" for kind, n in first_wrong.most_common()))


def memory_error(tokens: list[tuple[str, str]], k: int) -> str:
    """What the first wrong token of a teacher-forced memory body ([(target, predicted)]) gets wrong."""
    want, got = (t.strip() for t in tokens[k])
    line = "".join(t for t, _ in tokens[:k]).rsplit("\n", 1)[-1]
    if want == "[":
        return "an entry left out"
    if got == "[":
        return "an entry added"
    if line.startswith(("so far", "count")):
        return "the count or answer line"
    if want.isupper() or want.isdigit():
        return "a word or code miscopied"
    return "other"


if __name__ == "__main__":
    main()

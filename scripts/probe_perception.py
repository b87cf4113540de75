"""Does a model read the synthetic videos? Ask it to describe single events of held-out videos and count what it names.

    python scripts/probe_perception.py runs/default-model/final
    python scripts/probe_perception.py runs/default-model/stage1/checkpoint-600 --base runs/default-model/init

For each of the first --events events of held-out videos (dataset seed 7, never used in training), the model gets
the event record prompt (videomem.train.chain_data.event_records: 2 frames of the event, "What is shown in this
clip?") and the script checks whether its reply names the event's colour, shape, word and code. A checkpoint
directory of the trainer (pytorch_model.bin) is loaded into the architecture and tokenizer of --base.
--kind code probes code events alone and adds, for each of the code's three positions, how often the reply's code
has the right character there (chance: 1/20 letters, 1/7 digits), which says whether the glyphs are read at all.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from train_default_model import is_code_event

from videomem.backends.base import SamplingParams
from videomem.backends.hf import HFBackend
from videomem.config import load_config
from videomem.synth.generate import dataset_specs
from videomem.train.chain_data import event_records, record_to_steps, step_frames, synth_video
from videomem.train.sft import export_checkpoint
from videomem.video.resize import resize_frame

FIELDS = ("colour", "shape", "word", "code")
CODE_IN_REPLY = re.compile(r"\bcode (\w{3})\b")


def code_positions(code: str, reply: str) -> list[bool]:
    """For each character of `code`, whether the reply's first code ("code X9N") has it at the same position."""
    m = CODE_IN_REPLY.search(reply)
    return [m is not None and m.group(1)[i] == ch for i, ch in enumerate(code)]


def model_dir(model: Path, base: Path | None) -> Path:
    """`model`, or a temporary model directory holding a trainer checkpoint's weights in `base`'s files."""
    if (model / "config.json").is_file():
        return model
    if base is None:
        raise SystemExit(f"{model} is not a model directory; pass --base <the model it was trained from>")
    return export_checkpoint(model, base, Path(tempfile.mkdtemp()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model directory, or a trainer checkpoint directory with --base")
    ap.add_argument("--base", type=Path, default=None)
    ap.add_argument("--events", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7, help="dataset seed of the held-out videos")
    ap.add_argument("--kind", choices=["any", "code"], default="any", help="probe every event, or code events only")
    ap.add_argument("--show", action="store_true", help="print every reply")
    a = ap.parse_args(argv)
    path = model_dir(a.model, a.base)
    backend = HFBackend(str(path))
    clips = load_config(None, {"model.model": str(path)}).clips  # the model's reading settings (videomem.yaml)
    hits, totals = dict.fromkeys(FIELDS, 0), dict.fromkeys(FIELDS, 0)
    positions = [0, 0, 0]
    records = [r for spec in dataset_specs(a.seed, (1,), 40) for r in event_records(spec)
               if a.kind == "any" or is_code_event(r)][: a.events]  # fmt: skip
    for rec in records:
        (step,) = record_to_steps(rec)
        event = next(e for e in synth_video(rec).events if e.start == step.clip.start)
        frames = [resize_frame(f, backend.patch_factor, clips.min_pixels, clips.max_pixels) for f in step_frames(rec, step)]
        (reply,) = backend.generate(step.prompt(frames), 1, SamplingParams(max_new_tokens=48))
        for field in FIELDS:
            value = getattr(event, field)
            if value is not None:
                totals[field] += 1
                hits[field] += re.search(rf"\b{value}\b", reply.text) is not None
        if event.code is not None:
            positions = [n + hit for n, hit in zip(positions, code_positions(event.code, reply.text))]
        if a.show:
            print(f"{step.memory!r:45} -> {reply.text}")
    print("named correctly: " + ", ".join(f"{f} {hits[f]}/{totals[f]}" for f in FIELDS))
    if totals["code"]:
        print("code characters right by position: " + ", ".join(f"{n}/{totals['code']}" for n in positions))


if __name__ == "__main__":
    main()

"""Run the text stage (videomem.train.text_stage) alone, from any model, with every knob: for continuing a run's
text stage or comparing text-stage variants from the same weights (docs/training-log.md, session 9).

    python scripts/text_stage.py runs/default-model-v14/text-marks/final runs/default-model-v15/text-marks \
        --minutes 15 --seed 12
    python scripts/text_stage.py runs/default-model-v14/text-marks/final runs/exp-text-filtered \
        --minutes 15 --seed 12 --copy-share 0.3 --copy-filtered-share 0.5

The defaults are those of the training script's second text part (scripts/train_default_model.py: marks x2, a
tenth of the steps without a "yes", a quarter mark texts, copy texts drawn as its copy stage draws them). The log
prints the held-out text steps' accuracy (yes / no marks, memory tokens, answers, changed memories exact) every 200
steps and at the end.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from videomem.config import ClipConfig
from videomem.train.text_stage import train_text_stage


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model directory to start from")
    ap.add_argument("out", type=Path, help="output directory (out/final)")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mark-weight", type=float, default=2.0)
    ap.add_argument("--keep-without-yes", type=float, default=0.1)
    ap.add_argument("--mark-share", type=float, default=0.25)
    ap.add_argument("--copy-share", type=float, default=0.15, help="share of each batch given to copy texts")
    ap.add_argument("--copy-lookup-share", type=float, default=0.75)
    ap.add_argument("--copy-prompt-layout", type=float, default=0.5)
    ap.add_argument("--copy-filtered-share", type=float, default=0.0,
                    help="share of the copy texts that copy only the items marked 'yes' (copy_stage.copy_text)")
    ap.add_argument("--frames-per-clip", type=int, default=16)
    ap.add_argument("--max-pixels", type=int, default=16384)
    a = ap.parse_args(argv)
    stamp = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)
    clip_cfg = ClipConfig(clip_seconds=60, frames_per_clip=a.frames_per_clip, max_pixels=a.max_pixels, min_pixels=1024)
    mix = {"lookup_share": a.copy_lookup_share, "prompt_layout": a.copy_prompt_layout,
           "filtered_share": a.copy_filtered_share}  # fmt: skip
    train_text_stage(a.model, a.out, minutes=a.minutes, clip_config=clip_cfg, copy_share=a.copy_share,
                     copy_mix=mix, mark_share=a.mark_share, mark_weight=a.mark_weight,
                     keep_without_yes=a.keep_without_yes, seed=a.seed, log=stamp)  # fmt: skip


if __name__ == "__main__":
    main()

"""Experiment (docs/training-log.md, session 10): can the tiny model learn to read the three-character codes at all?

    python scripts/experiment_codes.py videomem/assets/default-model --out runs/exp-codes --videos 400 --factors 1 --warmup 30
    python scripts/train_default_model.py --out runs/v18 --until stage1 && \
        python scripts/experiment_codes.py runs/v18/stage1/final --out runs/v18/codes

Trains a model on code event records alone (2 frames of one code event, "code X9N in blue (0:15)": every video token
shows the code; videomem.train.chain_data.event_records) from dataset seed --data-seed, for --minutes: the training
script's code stage (scripts/train_default_model.py: event_stage), then probes held-out code events
(scripts/probe_perception.py --kind code: the code exact, and each of its three characters by position). Stage 1
reads colours, shapes and words but writes one code for all; this separates "not enough code examples" (the code-only
arm learns) from "the glyphs are too small for 128x128 frames and 16-pixel patches" (it does not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_perception import main as probe  # noqa: E402
from train_default_model import event_stage, is_code_event, specs_for  # noqa: E402

from videomem.train.chain_data import event_records  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="starting weights (a model directory)")
    ap.add_argument("--out", type=Path, default=Path("runs/exp-codes"))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0], help="video length factors (x 240 s)")
    ap.add_argument("--videos", type=int, nargs="+", default=[600, 300],
                    help="training videos per factor whose code events are used (the training script's event videos)")
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--probe-events", type=int, default=100)
    a = ap.parse_args(argv)
    # the fields event_stage reads from the training script's arguments
    a.max_steps, a.frames_per_clip, a.max_pixels = None, 16, 128 * 128
    a.save_steps, a.seed, a.stage1_sec_per_example, a.stage1_batch_size = 200, 0, 0.07, a.batch_size
    records = [r for spec in specs_for(a, a.videos) for r in event_records(spec) if is_code_event(r)]
    final = event_stage(a, "codes", a.model, a.out, records, a.minutes)
    probe([str(final), "--kind", "code", "--events", str(a.probe_events)])


if __name__ == "__main__":
    main()

"""Average the weights of several fine-tunings of one model (a "model soup", Wortsman et al. 2022), to test whether
the spread between short stage-2 runs from one start is noise that averaging removes (docs/training-log.md,
session 13).

    python scripts/average_checkpoints.py runs/soup runs/v24/final runs/v25/final runs/v27/final

Every model must have the same architecture and parameter names (fine-tunings of one checkpoint); the soup is their
uniform mean, or the `--weights` given. Tokenizer, chat template and reading defaults are the first model's.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from videomem.train.sft import copy_model_files


def average(models: list[Path], weights: list[float]) -> dict[str, torch.Tensor]:
    """The weighted mean of each parameter over `models`; raises ValueError when their parameters differ."""
    total = sum(weights)
    soup: dict[str, torch.Tensor] = {}
    names = None
    for path, w in zip(models, weights):
        state = load_file(path / "model.safetensors")
        if names is None:
            names = {k: v.shape for k, v in state.items()}
        elif {k: v.shape for k, v in state.items()} != names:
            raise ValueError(f"{path}: parameters differ from {models[0]}'s (not fine-tunings of one model)")
        for k, v in state.items():
            soup[k] = soup.get(k, 0) + v.to(torch.float64) * (w / total)
    return {k: v.to(torch.float32) for k, v in soup.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output model directory")
    ap.add_argument("models", type=Path, nargs="+", help="model directories (single model.safetensors each)")
    ap.add_argument("--weights", type=float, nargs="+", help="one per model (default: equal)")
    a = ap.parse_args(argv)
    weights = a.weights or [1.0] * len(a.models)
    if len(weights) != len(a.models):
        ap.error("--weights needs one value per model")
    try:
        soup = average(a.models, weights)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    a.out.mkdir(parents=True, exist_ok=True)
    copy_model_files(a.models[0], a.out)
    for name in ("config.json", "generation_config.json"):
        shutil.copy2(a.models[0] / name, a.out / name)
    save_file(soup, a.out / "model.safetensors", metadata={"format": "pt"})
    print(f"averaged {len(a.models)} models -> {a.out}")


if __name__ == "__main__":
    main()

"""Give a trained tiny VLM more language-model layers without changing what it computes, to continue training it
with more depth (docs/training-log.md, session 12: whether depth is what the memory writing lacks).

    python scripts/grow_layers.py runs/v17/final runs/v17-6layers --add 2

The new layers are copies of the last `--add` layers, appended after them, with their attention output and MLP down
projections set to zero: each adds nothing to the residual stream until training moves those weights, so the grown
model writes exactly what the original writes (checked here on one prompt before saving). The vision tower, the
embeddings and every other weight are the original's.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model directory (a Qwen3-VL or Qwen2.5-VL checkpoint)")
    ap.add_argument("out", type=Path, help="output model directory")
    ap.add_argument("--add", type=int, default=2, help="layers to append (copies of the last ones, zero output)")
    a = ap.parse_args(argv)
    from transformers import AutoModelForImageTextToText

    from videomem.train.sft import copy_model_files

    model = AutoModelForImageTextToText.from_pretrained(a.model, dtype=torch.float32)
    text = model.model.language_model
    n = len(text.layers)
    if not 1 <= a.add <= n:
        ap.error(f"--add must be 1..{n} (copies of the last layers)")
    for i in range(n - a.add, n):
        layer = copy.deepcopy(text.layers[i])
        layer.self_attn.layer_idx = len(text.layers)  # the KV cache's slot
        torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
        torch.nn.init.zeros_(layer.mlp.down_proj.weight)
        text.layers.append(layer)
    model.config.text_config.num_hidden_layers = len(text.layers)
    if getattr(model.config.text_config, "layer_types", None):
        model.config.text_config.layer_types += model.config.text_config.layer_types[n - a.add : n]
    check_unchanged(a.model, model)
    a.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(a.out)
    copy_model_files(a.model, a.out)
    print(f"{a.model}: {n} language layers -> {len(text.layers)}; saved to {a.out}")


def check_unchanged(original: Path, grown) -> None:
    """The grown model's logits on a short text equal the original's."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(original)
    ids = tok("Which of these codes was written in red? W3V W7V", return_tensors="pt")["input_ids"]
    before = AutoModelForImageTextToText.from_pretrained(original, dtype=torch.float32)
    with torch.no_grad():
        a, b = before(input_ids=ids).logits, grown(input_ids=ids).logits
    if not torch.allclose(a, b, atol=1e-5):
        raise SystemExit(f"grown model differs from the original (max |diff| {(a - b).abs().max():.2e})")


if __name__ == "__main__":
    main()

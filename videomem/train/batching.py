"""Supervised examples -> model inputs: one (step prompt, target) pair per example, labels only on the target.

The prompt goes through `HFBackend.encode`, the processor path inference uses (chat template, video tokens,
mm_token_type_ids, second_per_grid_ts); the target ids are appended after it, as in docs/backends-hf.md's scoring
snippet. Several examples are right-padded and their vision tensors concatenated into one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from videomem.backends.hf import HFBackend
from videomem.train.chain_data import Step
from videomem.video.resize import resize_frame

IGNORE_INDEX = -100  # torch cross_entropy's default ignore_index
# Chat templates' end-of-turn tokens, in the order we look for them (Qwen families, SmolVLM); inference stops there.
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_utterance>")
# Per-row token-level keys (padded along dim 1); everything else is a vision tensor concatenated along dim 0.
_ROW_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "labels", "loss_weights")


@dataclass
class SFTExample:
    """One teacher-forced step (videomem.train.chain_data.Step: the inference prompt of its clip given the oracle
    memory before it, and the target `<memory>...</memory><answer>...</answer>`) with a way to get its frames:
    `frames` renders the clip's frames (RGB uint8 [H, W, 3]) at the given timestamps on demand, so a dataset of
    thousands of steps holds no pixels."""

    step: Step
    frames: Callable[[list[float]], list[np.ndarray]]
    # character spans of the target that carry the loss; None: all of it and the end-of-turn token
    loss_spans: tuple[tuple[int, int], ...] | None = None
    # (start, end, weight): the target tokens overlapping a character span count `weight` times in the loss
    weighted_spans: tuple[tuple[int, int, float], ...] = ()

    @property
    def target(self) -> str:
        return self.step.target


def end_of_turn(tok) -> str:
    """The token that closes an assistant turn in tokenizer `tok`'s chat template (what generation stops at)."""
    for token in END_OF_TURN_TOKENS:
        tid = tok.convert_tokens_to_ids(token)
        if tid is not None and tid != tok.unk_token_id:
            return token
    return tok.eos_token


def step_prompt(example: SFTExample, backend: HFBackend, *, memory_budget: int, min_pixels: int, max_pixels: int):
    """The exact inference prompt (Step.prompt, i.e. videomem.prompt.build_step_prompt), frames resized as the video
    reader does."""
    timestamps = list(example.step.clip.timestamps)
    frames = [resize_frame(f, backend.patch_factor, min_pixels, max_pixels) for f in example.frames(timestamps)]
    return example.step.prompt(frames, memory_budget)


def encode_example(
    backend: HFBackend,
    example: SFTExample,
    *,
    memory_budget: int = 1024,
    min_pixels: int = 16 * 28 * 28,
    max_pixels: int = 128 * 32 * 32,
) -> dict[str, torch.Tensor]:
    """Model inputs (batch of one, on CPU) with `labels`: IGNORE_INDEX on every prompt token, the target ids plus the
    end-of-turn token after it. The loss then covers exactly what the model writes at inference (or, with
    example.loss_spans, only the target tokens that overlap those character spans). With example.weighted_spans,
    also `loss_weights` (1 on every token, the span's weight on the target tokens that overlap it)."""
    prompt = step_prompt(example, backend, memory_budget=memory_budget, min_pixels=min_pixels, max_pixels=max_pixels)
    inputs = {k: v.cpu() for k, v in backend.encode(prompt).items()}
    enc = backend.tokenizer(example.target + end_of_turn(backend.tokenizer), add_special_tokens=False,
                            return_offsets_mapping=example.loss_spans is not None or bool(example.weighted_spans))  # fmt: skip
    target = torch.tensor([enc["input_ids"]], dtype=torch.long)  # [1, L]
    n_prompt = inputs["input_ids"].shape[1]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], target], 1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(target)], 1)
    if "mm_token_type_ids" in inputs:  # text tokens are type 0 (video 2): Qwen's 3D rope is built from these
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(target)], 1)
    labels = torch.full_like(inputs["input_ids"], IGNORE_INDEX)
    labels[:, n_prompt:] = target
    if example.loss_spans is not None:
        inside = [any(a < e and b > s for s, e in example.loss_spans) for a, b in enc["offset_mapping"]]
        labels[:, n_prompt:][:, ~torch.tensor(inside)] = IGNORE_INDEX
    inputs["labels"] = labels
    if example.weighted_spans:
        weights = torch.ones(inputs["input_ids"].shape, dtype=torch.float32)
        for s, e, w in example.weighted_spans:
            overlaps = torch.tensor([a < e and b > s for a, b in enc["offset_mapping"]])
            weights[:, n_prompt:][:, overlaps] = w
        inputs["loss_weights"] = weights
    return inputs


def collate(encoded: list[dict[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the token rows (pad id / mask 0 / type 0 / label IGNORE_INDEX) and concatenate vision tensors in
    example order (Qwen: patches [sum patches, D], grid_thw [videos, 3], second_per_grid_ts [videos]). SmolVLM's
    per-example image stacks [1, N, C, H, W] are padded with all-zero images, which Idefics3 drops as padding."""
    width = max(e["input_ids"].shape[1] for e in encoded)
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "mm_token_type_ids": 0, "labels": IGNORE_INDEX,
            "loss_weights": 0.0}  # fmt: skip
    if any("loss_weights" in e for e in encoded):  # rows without weighted spans weigh every token 1
        encoded = [{"loss_weights": torch.ones(e["input_ids"].shape)} | e for e in encoded]
    batch: dict[str, torch.Tensor] = {}
    for key in encoded[0]:
        values = [e[key] for e in encoded]
        if key in _ROW_KEYS:
            batch[key] = torch.cat(
                [torch.nn.functional.pad(v, (0, width - v.shape[1]), value=fill[key]) for v in values], 0
            )  # [B, width]
        elif values[0].dim() == 5:  # [1, N_images, C, H, W]
            n = max(v.shape[1] for v in values)
            batch[key] = torch.cat([torch.nn.functional.pad(v, (0, 0) * 3 + (0, n - v.shape[1])) for v in values], 0)
        elif values[0].dim() == 4 and key == "pixel_attention_mask":  # [1, N, H, W]
            n = max(v.shape[1] for v in values)
            batch[key] = torch.cat([torch.nn.functional.pad(v, (0, 0) * 2 + (0, n - v.shape[1])) for v in values], 0)
        else:
            batch[key] = torch.cat(values, 0)
    return batch

"""Local transformers backend: any `AutoModelForImageTextToText` checkpoint with a chat template.

Tested on Qwen2.5-VL, Qwen3-VL and SmolVLM(2) architectures. How a prompt becomes model inputs:

- system text, then the parts in order, rendered with the model's own chat template;
- a VideoPart goes in as ONE video input for Qwen families (frames_as='video', the default there):
  Qwen3-VL's processor writes each temporal patch's timestamp ("<1.8 seconds>") itself from the metadata we pass
  (true timestamps, not a resampled guess); Qwen2.5-VL has no timestamps in its video tokens, so a text listing the
  frame times goes just before the video and `second_per_grid_ts` is set from the real frame spacing (its 3D rotary
  time axis). Otherwise (frames_as='images', and every non-Qwen model) each frame is an image preceded by "[12.5s]".
- frames arrive sized by the video reader (sides multiples of `patch_factor`); Qwen processors are called with
  do_resize=False so they keep that size. SmolVLM resizes to its fixed square input, as it must.

`generate` prefills the prompt once and samples n continuations from that one KV cache (PRPO's G samples of one
step share a prompt). `encode` gives the model inputs of a prompt, for trainers that recompute log-probs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import logging as hf_logging
from transformers.video_utils import VideoMetadata

from videomem.backends.base import Completion, Prompt, SamplingParams, TextPart, VideoPart
from videomem.backends.video_processing import QWEN_MODEL_TYPES, load_processor
from videomem.config import BUNDLED_MODEL_DIR
from videomem.errors import ModelError
# Qwen3-VL frames each temporal patch as "<t seconds><|vision_start|>...<|vision_end|>" itself; the chat template's
# own wrapper around the video would nest vision markers (the reference processor replaced this whole string).
QWEN3_VIDEO_SLOT = "<|vision_start|><|video_pad|><|vision_end|>"
# Qwen3-VL timestamps come from integer frame indices / fps: a 1 kHz timeline keeps them exact to the millisecond.
TIMELINE_FPS = 1000.0


def resolve_model(model: str) -> str:
    """'bundled' -> the shipped checkpoint; a path must exist; anything else is taken as a hub id."""
    if model == "bundled":
        if not (BUNDLED_MODEL_DIR / "config.json").is_file():
            raise ModelError(f"bundled model missing at {BUNDLED_MODEL_DIR}: reinstall videomem, or retrain it with "
                             "scripts/train_default_model.py --install")
        return str(BUNDLED_MODEL_DIR)
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).exists()
    if looks_like_path:
        path = Path(model).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(f"cannot load model {model}: no checkpoint directory (with config.json) at {path}")
        return str(path)
    return model


def pick_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelError(f"invalid device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device} requested but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"device {device} requested but MPS is not available here")
    return dev


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on CUDA, fp32 elsewhere (CPU kernels and older MPS are slow or missing for bf16)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _frame_spacing(timestamps: list[float]) -> float:
    """Mean seconds between frames; 1.0 for a single frame (one temporal position, so the value is unused)."""
    if len(timestamps) < 2:
        return 1.0
    return (timestamps[-1] - timestamps[0]) / (len(timestamps) - 1)


class HFBackend:
    """Backend for a local transformers VLM (hub id, checkpoint directory, or 'bundled')."""

    def __init__(self, model: str = "bundled", device: str = "auto", dtype: str = "auto", frames_as: str = "auto"):
        self.name = model
        path = resolve_model(model)
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        # Our CLI draws its own progress; transformers' per-load weight bar would break into it.
        hf_logging.disable_progress_bar()
        try:
            self.processor = load_processor(path)
            self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as e:
            raise ModelError(f"cannot load model {model}: {_one_line(e)}") from e
        self.tokenizer = self.processor.tokenizer
        if not self.processor.chat_template:
            raise ModelError(f"cannot use model {model}: it has no chat template")
        config = self.model.config
        self.model_type = config.model_type
        self.is_qwen = self.model_type in QWEN_MODEL_TYPES
        if frames_as == "auto":
            frames_as = "video" if self.is_qwen else "images"
        if frames_as == "video" and not self.is_qwen:
            raise ModelError(f"model {model} ({self.model_type}) takes frames as images only: use frames_as='images'")
        if frames_as not in ("video", "images"):
            raise ModelError(f"invalid frames_as {frames_as!r}: use auto, video or images")
        self.frames_as = frames_as
        vision = config.vision_config
        merge = getattr(vision, "spatial_merge_size", None) or getattr(config, "scale_factor", 1)
        self._patch_factor = int(vision.patch_size) * int(merge)
        self._temporal_patch = int(getattr(vision, "temporal_patch_size", 1))
        self.stop_ids = self._stop_token_ids()

    # --- Backend protocol -------------------------------------------------------------------------------------------

    @property
    def patch_factor(self) -> int:
        return self._patch_factor

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def truncate_tokens(self, text: str, max_tokens: int) -> str:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= max_tokens:
            return text
        # Decoding a cut can re-tokenize differently (a split UTF-8 byte or a merge across the cut); drop tokens until
        # the decoded prefix re-counts within the cap.
        keep = max(max_tokens, 0)
        while keep > 0:
            prefix = self.tokenizer.decode(ids[:keep], skip_special_tokens=False).rstrip("\ufffd")
            if self.count_tokens(prefix) <= max_tokens:
                return prefix
            keep -= 1
        return ""

    def generate(self, prompt: Prompt, n: int = 1, sampling: SamplingParams | None = None) -> list[Completion]:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        sampling = sampling or SamplingParams()
        inputs = self.encode(prompt)
        prompt_len = inputs["input_ids"].shape[1]
        recorder = _TokenLogprobs() if sampling.logprobs else None
        with torch.inference_mode():
            cache = self._prefill(inputs)
            cache.batch_repeat_interleave(n)
            # Everything but the last prompt token is cached: generate runs that token for all n rows, then decodes.
            rows = {
                k: inputs[k].repeat(n, 1) for k in ("input_ids", "attention_mask", "mm_token_type_ids") if k in inputs
            }
            with _seeded(sampling.seed, self.device):
                sequences = self.model.generate(
                    **rows, past_key_values=cache, **self._generation_kwargs(sampling, recorder)
                )
        new_tokens = sequences[:, prompt_len:]  # [n, T]
        logprobs = recorder.result(new_tokens) if recorder else None
        return [
            self._completion(new_tokens[i], None if logprobs is None else logprobs[i], prompt_len) for i in range(n)
        ]

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # --- model inputs -----------------------------------------------------------------------------------------------

    def encode(self, prompt: Prompt) -> dict[str, torch.Tensor]:
        """The model inputs for a prompt, batch of one, on the model's device: input_ids, attention_mask and, as the
        architecture needs them, mm_token_type_ids, pixel values, grid sizes, second_per_grid_ts. Trainers append
        completion ids to input_ids (and extend attention_mask / mm_token_type_ids with 1s / 0s) to score them."""
        messages, images, videos, metadata, spacings = self._messages(prompt)
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        kwargs = {}
        if self.is_qwen:
            kwargs["do_resize"] = False  # the reader already sized the frames (checked in _check_frames)
            if self.model_type.startswith("qwen3"):
                text = text.replace(QWEN3_VIDEO_SLOT, "<|video_pad|>")
        if videos:
            kwargs.update(video_metadata=metadata, do_sample_frames=False)
        batch = self.processor(text=[text], images=images or None, videos=videos or None, return_tensors="pt", **kwargs)
        if videos and self.model_type in ("qwen2_vl", "qwen2_5_vl"):
            # seconds per temporal patch, from the real frame spacing (the processor would derive it from an fps)
            batch["second_per_grid_ts"] = torch.tensor([self._temporal_patch * s for s in spacings])
        batch.pop("video_metadata", None)
        inputs = {}
        for k, v in batch.items():
            is_pixels = k.startswith("pixel_values") and v.is_floating_point()
            inputs[k] = v.to(self.device, self.dtype) if is_pixels else v.to(self.device)
        return inputs

    def _messages(self, prompt: Prompt):
        """Chat messages for the template, plus the frames, video metadata and frame spacings they refer to."""
        content: list[dict] = []
        images, videos, metadata, spacings = [], [], [], []
        for part in prompt.parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
                continue
            if not isinstance(part, VideoPart):
                raise ModelError(f"unsupported prompt part {type(part).__name__}")
            if len(part.frames) != len(part.timestamps) or not part.frames:
                raise ModelError(
                    f"a video part needs one timestamp per frame, got {len(part.frames)} frames "
                    f"and {len(part.timestamps)} timestamps"
                )
            self._check_frames(part)
            if self.frames_as == "images":
                for t in part.timestamps:
                    content += [{"type": "text", "text": f"[{t:.1f}s]"}, {"type": "image"}]
                images.extend(part.frames)
                continue
            if self.model_type in ("qwen2_vl", "qwen2_5_vl"):
                times = ", ".join(f"{t:.1f}s" for t in part.timestamps)
                content.append({"type": "text", "text": f"Frames at {times}: "})
            content.append({"type": "video"})
            videos.append(list(part.frames))
            indices = [round(t * TIMELINE_FPS) for t in part.timestamps]
            metadata.append(
                VideoMetadata(
                    total_num_frames=indices[-1] + 1,
                    fps=TIMELINE_FPS,
                    frames_indices=indices,
                    width=part.frames[0].shape[1],
                    height=part.frames[0].shape[0],
                )
            )
            spacings.append(_frame_spacing(part.timestamps))
        messages = [{"role": "user", "content": content}]
        if prompt.system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": prompt.system}]})
        return messages, images, videos, metadata, spacings

    def _check_frames(self, part: VideoPart) -> None:
        if not self.is_qwen:  # fixed-size image encoders resize every frame anyway
            return
        f = self._patch_factor
        for i, frame in enumerate(part.frames):
            h, w = frame.shape[:2]
            if h % f or w % f:
                raise ModelError(
                    f"frame {i} is {w}x{h}: sides must be multiples of {f} for {self.name} "
                    "(frames are sized by the video reader)"
                )

    # --- generation -------------------------------------------------------------------------------------------------

    def _prefill(self, inputs: dict[str, torch.Tensor]):
        """Run every prompt token but the last through the model once (vision encoder included); return the cache."""
        if hasattr(getattr(self.model, "model", None), "rope_deltas"):
            # Qwen models keep the 3D-rotary offset of the last prompt on the module; a text-only prompt would not
            # overwrite it, and generate would then continue with a stale offset.
            self.model.model.rope_deltas = None
        head = {
            k: (v[:, :-1] if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v)
            for k, v in inputs.items()
        }
        return self.model(**head, use_cache=True, logits_to_keep=1).past_key_values

    def _generation_kwargs(self, sampling: SamplingParams, recorder: _TokenLogprobs | None) -> dict:
        """Only SamplingParams decide decoding: the checkpoint's own defaults (top_k, temperature, repetition penalty)
        are overridden, so seeds and log-probs mean the same on every model. Temperature and top-p are applied by our
        own list of transformers' warpers, after the log-prob recorder, which must see the raw logits."""
        processors = [recorder] if recorder else []
        if sampling.temperature > 0 and sampling.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.temperature > 0 and sampling.top_p < 1.0:
            processors.append(TopPLogitsWarper(sampling.top_p))
        kwargs = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": sampling.temperature > 0,
            "repetition_penalty": 1.0,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self._pad_id(),
            "logits_processor": LogitsProcessorList(processors),
        }
        if sampling.temperature > 0:  # neutral values keep generate from adding its own warpers
            kwargs.update(temperature=1.0, top_p=1.0, top_k=0)
        return kwargs

    def _stop_token_ids(self) -> list[int]:
        """The model's eos ids plus the chat template's end-of-turn token (<|im_end|>, <end_of_utterance>)."""
        ids = self.model.generation_config.eos_token_id
        ids = list(ids) if isinstance(ids, (list, tuple)) else ([] if ids is None else [ids])
        for token in ("<|im_end|>", "<end_of_utterance>", self.tokenizer.eos_token):
            tid = self.tokenizer.convert_tokens_to_ids(token) if token else None
            if tid is not None and tid != self.tokenizer.unk_token_id and tid not in ids:
                ids.append(tid)
        return ids

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.stop_ids[0]

    def _completion(self, tokens: torch.Tensor, logprobs, prompt_len: int) -> Completion:
        ids = tokens.tolist()
        stop_at = next((i for i, t in enumerate(ids) if t in self.stop_ids), None)
        if stop_at is None:  # generate ends a row only at a stop token or at max_new_tokens
            finish = "length"
        else:
            ids, finish = ids[: stop_at + 1], "stop"  # the stop token is part of the sample (it was drawn)
        return Completion(
            text=self.tokenizer.decode(ids, skip_special_tokens=True),
            prompt_tokens=prompt_len,
            completion_tokens=len(ids),
            finish_reason=finish,
            token_ids=ids,
            logprobs=None if logprobs is None else logprobs[: len(ids)].tolist(),
        )


class _TokenLogprobs(LogitsProcessor):
    """log-softmax of the RAW logits at each sampled token (temperature 1, no top-p): the policy's own log-probability
    of the token, which is what a trainer recomputes with a forward pass, whatever settings drew it. Holds one step
    of log-probs at a time: keeping every step's logits (output_logits) costs steps x n x vocab floats, gigabytes
    for 1536 tokens of a 150k vocabulary."""

    def __init__(self):
        self.steps: list[torch.Tensor] = []
        self.last: torch.Tensor | None = None  # [n, V] log-probs of the step whose token is not drawn yet

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.last is not None:  # the previous step's token is now the last input id
            self.steps.append(self.last.gather(-1, input_ids[:, -1:])[:, 0])
        self.last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def result(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """[n, T] log-probs of new_tokens (the final step's token never came back as an input)."""
        return torch.stack([*self.steps, self.last.gather(-1, new_tokens[:, -1:])[:, 0]], dim=1)


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Seed the sampler for one call without disturbing the caller's global RNG state."""
    if seed is None:
        yield
        return
    accelerator = device.type != "cpu"
    with torch.random.fork_rng(
        devices=[device] if accelerator else [], device_type=device.type if accelerator else "cuda"
    ):
        torch.manual_seed(seed)
        yield

"""The one configuration system: pydantic models, loaded from a YAML/JSON file and overridden by CLI
flags (the CLI declares each flag against a dotted field path and takes its help from here).

The whole RunConfig is written into every trace, so a result records how it was made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from videomem.errors import ConfigError

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default-model"
# In a local model directory: the clip and memory settings the model was trained to read with (e.g. the bundled
# model's frame size). They sit under the config file and the flags, so anything given explicitly wins.
READING_DEFAULTS_FILE = "videomem.yaml"
READING_SECTIONS = ("clips", "memory")
_ALTERNATIVES = (("clips", "clip_seconds"), ("frames_per_clip", "fps"))  # clip fields that answer one question each


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ClipConfig(_Section):
    """How the video is cut into clips and which frames of each clip the model sees."""

    clips: int = Field(4, ge=1, description="Number of equal clips T (paper default 4). Ignored when clip_seconds is set.")
    clip_seconds: float | None = Field(
        None, gt=0, description="Fixed clip duration in seconds; T then grows with the video (hours-long video)."
    )
    frames_per_clip: int | None = Field(
        16, ge=1, description="Frames sampled per clip (paper: 16 at evaluation, 32 in training)."
    )
    fps: float | None = Field(None, gt=0, description="Sample frames at this rate instead of a fixed count per clip.")
    max_pixels: int = Field(128 * 32 * 32, ge=1024, description="Per-frame pixel cap (paper: 131,072 = 128*32*32).")
    min_pixels: int = Field(16 * 28 * 28, ge=1, description="Per-frame pixel floor (Qwen smart_resize min_pixels).")
    decode: Literal["auto", "sequential", "seek"] = Field(
        "auto",
        description="Decoding strategy: auto picks per frame from the keyframe spacing; sequential decodes "
        "forward and skips; seek jumps to the keyframe before each frame.",
    )
    prefetch: bool = Field(True, description="Decode the next clip in the background while the model works.")

    @model_validator(mode="after")
    def _one_rate(self) -> ClipConfig:
        if self.fps is None and self.frames_per_clip is None:
            raise ValueError("set frames_per_clip or fps")
        return self


class ModelConfig(_Section):
    """Which model answers, and how it is reached."""

    backend: Literal["hf", "openai"] = Field("hf", description="hf: local transformers model; openai: OpenAI-compatible HTTP server.")
    model: str = Field(
        "bundled", description="hf: checkpoint dir or hub id ('bundled' = the model shipped with videomem); openai: served model name."
    )
    device: str = Field("auto", description="hf: torch device (auto, cpu, cuda, cuda:1, mps).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="hf: weights dtype (auto: bf16 on GPU, fp32 on CPU).")
    frames_as: Literal["auto", "video", "images"] = Field(
        "auto", description="Send frames as one video input (where the model supports it) or as separate images."
    )
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai: server base URL.")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable that holds the API key.")
    timeout: float = Field(120.0, gt=0, description="openai: seconds per request.")
    retries: int = Field(4, ge=0, description="openai: retries on 429, 5xx and connection errors (exponential backoff).")
    concurrency: int = Field(4, ge=1, description="openai: requests in flight at once.")
    use_video_url: bool = Field(
        False, description="openai: send frames as one vLLM video_url (data URL) with media_io_kwargs instead of images."
    )
    tokenizer: str | None = Field(
        None, description="openai: local tokenizer (dir or hub id) for counting memory tokens; default asks the server's /tokenize."
    )
    patch_factor: int | None = Field(
        None,
        ge=1,
        description="openai: frame sides are multiples of this (patch x merge: 28 for Qwen2/2.5-VL, 32 for Qwen3-VL); "
        "default: what `videomem serve` publishes, else 28. hf reads it from the model.",
    )
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="openai: how frames are encoded (png is lossless, larger).")
    return_token_ids: bool = Field(
        False, description="openai: ask for completion token ids (vLLM's return_tokens_as_token_ids; the RL trainer needs them)."
    )
    max_new_tokens: int = Field(1536, ge=1, description="Tokens the model may write per clip.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0 = greedy).")
    seed: int = Field(0, description="Sampling seed.")


class MemoryConfig(_Section):
    max_tokens: int = Field(1024, ge=1, description="Hard cap L_max on memory tokens (model's own tokenizer); longer memory is truncated and the truncation recorded.")


class SFTConfig(_Section):
    """Cold-start supervised fine-tuning (method.md 2.1; `videomem train sft`, docs/sft.md). The model to start
    from is `model.model`; frames are sized by `clips.min_pixels`/`clips.max_pixels` as at inference."""

    data: str | None = Field(
        None, description="Chain-of-memory JSONL (one record per question, docs/sft.md): each record gives T supervised steps."
    )
    output_dir: str = Field("runs/sft", description="Where checkpoints (checkpoint-<step>/), metrics.jsonl and the final model go.")
    max_steps: int = Field(1000, ge=1, description="Optimizer steps to train (each: grad_accum micro-batches per process).")
    batch_size: int = Field(
        8, ge=1, description="Single-step examples per micro-batch per process (training-notes: 32 fits a 3M-param model on CPU)."
    )
    grad_accum: int = Field(1, ge=1, description="Micro-batches summed into one optimizer step; the loss is the mean over all target tokens of the step.")
    lr: float = Field(
        5e-4,
        gt=0,
        description="Peak AdamW learning rate. training-notes: 5e-4 to 7e-4 for from-scratch tiny models (2e-3 stalled); "
        "use ~1e-5 (full) or ~1e-4 (LoRA) to fine-tune a pretrained VLM.",
    )
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up from 0 to lr over this many steps (training-notes: warm up).")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Decay after warm-up to 0 at max_steps (transformers' get_scheduler names)."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (TRL SFTConfig default 0.0).")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1 (torch and TRL default).")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="AdamW beta2 (torch and TRL default).")
    max_grad_norm: float = Field(1.0, gt=0, description="Clip the global gradient norm to this (TRL/Trainer default 1.0).")
    lora: bool = Field(False, description="Train LoRA adapters (peft) instead of every weight; the exported model is merged.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha (effective scale alpha/r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names that get adapters (peft target_modules). The defaults match the language model of "
        "Qwen2.5-VL/Qwen3-VL/SmolVLM only; add the vision tower's (e.g. 'qkv', 'proj') to adapt it too.",
    )
    freeze: list[Literal["vision", "language"]] = Field(
        [],
        description="Parts kept fixed: 'vision' (the vision encoder), 'language' (the language model with its embeddings "
        "and head). The projector between them (Qwen's merger, SmolVLM's connector) always trains. LLaVA-style "
        "recipes freeze the vision tower; freezing the language model trains perception alone.",
    )
    save_steps: int = Field(100, ge=1, description="Write a resumable checkpoint every this many optimizer steps (and at the end).")
    save_total_limit: int | None = Field(
        3, ge=1, description="Keep only the newest this many checkpoints (TRL/Trainer's name); None keeps all."
    )
    resume: bool = Field(True, description="Continue from the latest checkpoint in output_dir if there is one.")
    seed: int = Field(0, description="Seeds model init of adapters, data order (a permutation per epoch) and dropout.")
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Weights dtype while training (bf16 on GPU halves memory; CPU: float32)."
    )


class PRPOConfig(_Section):
    """The RL stage (method.md 2.2; `videomem train prpo`, videomem/train/prpo.py, whose docstring lists every choice).
    The policy starts from `model.model` (a local transformers model); rollouts come from it, or from the `model`
    backend when `rollouts` is "backend" (e.g. a vLLM server), with log-probs recomputed locally."""

    data: str | None = Field(None, description="Multiple-choice records (chain-of-memory JSONL: question, options, answer, clips); their step targets are not used.")
    output_dir: str = Field("runs/prpo", description="Where checkpoints, metrics.jsonl and the final model go.")
    variant: Literal["prpo", "grpo"] = Field(
        "prpo", description="prpo: G samples per step from ONE shared prompt, one memory carried on (PSP; paper). grpo: G independent memory chains (the paper's baseline)."
    )
    reward: Literal["tcr", "terminal"] = Field(
        "tcr", description="tcr: Temporal Cascading Reward at every step, scored against the final answer (paper). terminal: only the last step is rewarded (paper's ablation)."
    )
    group_size: int = Field(8, ge=2, description="G, samples per step (paper: 8; TRL num_generations).")
    examples_per_step: int = Field(16, ge=1, description="Examples (videos x question) per optimizer step, all processes (paper: global batch 16).")
    max_steps: int = Field(100, ge=1, description="Optimizer steps.")
    alpha: float = Field(1.0, ge=0, description="TCR weight of answer consistency (paper: 1.0).")
    format_reward: float = Field(1.0, ge=0, description="TCR reward for the exact <memory>...</memory><answer>...</answer> format (paper: 1).")
    beta: float = Field(0.005, ge=0, description="TCR memory-overflow penalty per token beyond memory.max_tokens (paper: 0.005; 0 = the paper's 'without memory penalty').")
    psp: Literal["sample", "argmax"] = Field("sample", description="PSP: sample the memory to carry on from softmax(A / tau_t) (paper) or take the best (ablation).")
    tau0: float = Field(1.0, gt=0, description="PSP temperature at t = 0, tau_t = tau0 * gamma^t (paper: not given; project choice).")
    gamma: float = Field(0.7, gt=0, le=1, description="PSP temperature decay per clip, < 1: explore early, exploit late (paper: not given; project choice).")
    epsilon: float = Field(0.2, ge=0, description="Lower clip range of the ratio (TRL epsilon, PPO's 0.2).")
    epsilon_high: float | None = Field(None, ge=0, description="Upper clip range (TRL epsilon_high; None: epsilon).")
    kl_coef: float = Field(0.0, ge=0, description="KL penalty to the starting model, k3 estimator (TRL beta; default 0.0 as TRL's).")
    num_iterations: int = Field(1, ge=1, description="Updates per batch of rollouts (TRL num_iterations; 1: the ratio is 1, clipping inactive).")
    adv_eps: float = Field(1e-4, gt=0, description="eps in A = (R - mean) / (std + eps) (TRL: 1e-4).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of rollouts; log-probs use logits / temperature (TRL).")
    max_new_tokens: int = Field(256, ge=1, description="Tokens a sample may write per clip (TRL max_completion_length).")
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate (TRL GRPOConfig default 1e-6).")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps, then constant.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping (TRL default 1.0).")
    lora: bool = Field(False, description="Train LoRA adapters (sft.lora_* settings) instead of every weight.")
    rollouts: Literal["policy", "backend"] = Field(
        "policy", description="policy: the training model samples (one prefill per step, shared by G). backend: the `model` backend samples (e.g. vLLM over HTTP; keep its weights in sync yourself)."
    )
    policy: str | None = Field(None, description="The local model to train when rollouts come from a backend (default: model.model).")
    save_steps: int = Field(20, ge=1, description="Checkpoint every this many optimizer steps (and at the end).")
    resume: bool = Field(True, description="Continue from the latest checkpoint in output_dir.")
    seed: int = Field(0, description="Data order, sampling and PSP draws.")


class RunConfig(_Section):
    clips: ClipConfig = Field(default_factory=ClipConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    prpo: PRPOConfig = Field(default_factory=PRPOConfig)


def field_help(path: str, root: type[BaseModel] = RunConfig) -> str:
    """Description of a dotted field, e.g. field_help('clips.fps') (for CLI help)."""
    model: type[BaseModel] = root
    *heads, last = path.split(".")
    for head in heads:
        model = model.model_fields[head].annotation  # type: ignore[assignment]
    return model.model_fields[last].description or ""


def _set_dotted(data: dict, path: str, value: Any) -> None:
    *heads, last = path.split(".")
    for head in heads:
        data = data.setdefault(head, {})
    data[last] = value


def _merge(under: dict, over: dict) -> dict:
    out = dict(under)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def reading_defaults(data: dict) -> dict:
    """The clips/memory sections that the local model `data` names recommends in its READING_DEFAULTS_FILE, or {}."""
    model = data.get("model") or {}
    if not isinstance(model, dict) or model.get("backend", "hf") != "hf":
        return {}
    name = model.get("model", "bundled")
    folder = BUNDLED_MODEL_DIR if name == "bundled" else Path(str(name)).expanduser()
    path = folder / READING_DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        found = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(found, dict) or set(found) - set(READING_SECTIONS):
        raise ConfigError(f"{path} may only hold the sections {', '.join(READING_SECTIONS)}")
    return found


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, *, base: RunConfig | None = None
) -> RunConfig:
    """`base` or a file (YAML or JSON) first, then dotted overrides (None values are skipped: the flag
    was not given); under both, the reading defaults of the local model they name (`reading_defaults`)."""
    data: dict = base.model_dump() if base is not None else {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            text = p.read_text()
            data = (json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)) or {}
        except (yaml.YAMLError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot parse config {p}: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {p} must be a mapping of sections (clips, model, memory)")
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    defaults = reading_defaults(data)
    given = data.get("clips") or {}
    for group in _ALTERNATIVES:  # `--clips 8` given: the model's clip_seconds must not override it
        if any(k in given for k in group):
            for k in group:
                (defaults.get("clips") or {}).pop(k, None)
    data = _merge(defaults, data)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "config"
        raise ConfigError(f"invalid config at {where}: {err['msg']}") from None

"""Cold-start SFT (method.md 2.1): teach a VLM to write `<memory>M_t</memory><answer>a_t</answer>` for clip t.

    chain-of-memory records --record_to_steps--> single steps (M_{t-1}, clip t, target)   [teacher forcing]
    for step in 1..max_steps:
        grad_accum micro-batches per process, each batch_size steps drawn from a shuffled list of ALL steps
        loss = sum of target-token cross-entropy / target tokens of the whole optimizer step (all processes)
        clip grad norm, AdamW, warm-up + cosine/linear decay
        log one JSONL line; every save_steps a checkpoint that resumes exactly
    export: a plain transformers checkpoint (LoRA merged) that HFBackend loads

Choices (docs/sft.md says why in more words):
- Teacher forcing with single steps: step t is trained on the oracle M_{t-1}, never on the model's own memory, so a
  batch mixes every step position and no T-step chain is run (training-notes).
- The prompt is `build_step_prompt` through `HFBackend.encode`: the same text, frames sizing and processor path as
  inference. Loss only on the target and its end-of-turn token.
- Loss normalisation: per target token over the whole optimizer step (all micro-batches, all processes), so
  grad_accum x batch_size equals one big batch (transformers' num_items_in_batch). Each rank's loss is scaled by the
  world size because DDP averages gradients.
- Data order without a DataLoader: one permutation of all steps per epoch (seed + epoch), read as a stream; every
  process takes its own slices of each optimizer step's window. The position in that stream is one integer, so a
  resume continues with exactly the next examples (accelerate's skip_first_batches would replay the loader).
- Multi-process through accelerate (`accelerate launch`): model and optimizer prepared (DDP with gloo on CPU), the
  scheduler registered for save/load_state; only the main process logs and exports; save_state writes the weights
  once and one RNG file per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import get_scheduler

from videomem.backends.hf import HFBackend, resolve_model
from videomem.config import RunConfig
from videomem.errors import ConfigError
from videomem.train.batching import IGNORE_INDEX, SFTExample, collate, encode_example

STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"


# --- data ---------------------------------------------------------------------------------------------------------


def examples_from_records(records: Iterable[dict]) -> list[SFTExample]:
    """Every clip step of every chain-of-memory record (videomem.train.chain_data, docs/cold-start-data.md), with
    the previous memory it is conditioned on. Frames are rendered on demand from the synthetic video spec."""
    from videomem.train.chain_data import record_to_steps, step_frames

    examples = []
    for record in records:
        if record.get("synth") is None:
            raise ConfigError(
                f"record {record.get('id')}: SFT on real-video records (frames via ClipReader) is not wired up yet"
            )
        for step in record_to_steps(record):
            examples.append(SFTExample(step, frames=lambda ts, record=record, step=step: step_frames(record, step)))
    return examples


def load_examples(path: str | Path) -> list[SFTExample]:
    from videomem.train.chain_data import read_records

    return examples_from_records(read_records(path))


def window(n_examples: int, seed: int, start: int, size: int) -> list[int]:
    """Example indices at stream positions [start, start+size): epoch e is permutation(seed + e) of all examples."""
    perms: dict[int, list[int]] = {}
    out = []
    for pos in range(start, start + size):
        epoch, i = divmod(pos, n_examples)
        if epoch not in perms:
            perms[epoch] = torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        out.append(perms[epoch][i])
    return out


# --- loss ---------------------------------------------------------------------------------------------------------


def target_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum of cross-entropy over target tokens, each times its `loss_weights` entry where the batch has them;
    number of target tokens; number predicted right)."""
    labels = batch["labels"][:, 1:]  # token i+1 is predicted at position i
    logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "loss_weights")}).logits[:, :-1]
    mask = labels != IGNORE_INDEX
    token_loss = F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )  # [B * (S-1)], 0 where ignored
    if "loss_weights" in batch:
        token_loss = token_loss * batch["loss_weights"][:, 1:].flatten()
    loss_sum = token_loss.sum()
    correct = ((logits.argmax(-1) == labels) & mask).sum()
    return loss_sum, mask.sum(), correct


# --- model --------------------------------------------------------------------------------------------------------


def load_model(config: RunConfig, device: torch.device) -> HFBackend:
    """The backend (processor + model) to train; LoRA adapters wrap the model in place when sft.lora is set."""
    sft = config.sft
    backend = HFBackend(config.model.model, device=str(device), dtype=sft.dtype, frames_as=config.model.frames_as)
    if sft.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=sft.lora_r,
            lora_alpha=sft.lora_alpha,
            lora_dropout=sft.lora_dropout,
            target_modules=list(sft.lora_target_modules),
            bias="none",
        )
        backend.model = get_peft_model(backend.model, lora)
    freeze_parts(backend.model, sft.freeze)
    backend.model.train()
    return backend


_VISION_KEYS = ("visual.", "vision_model.", "vision_tower.")  # Qwen2.5/3-VL, SmolVLM (Idefics3), LLaVA
_PROJECTOR_KEYS = ("merger", "connector.", "multi_modal_projector.")


def model_part(name: str) -> str:
    """'projector', 'vision' or 'language': which part of a VLM the parameter `name` belongs to."""
    if any(k in name for k in _PROJECTOR_KEYS):
        return "projector"
    return "vision" if any(k in name for k in _VISION_KEYS) else "language"


def freeze_parts(model, parts: list[str]) -> None:
    for name, param in model.named_parameters():
        if model_part(name) in parts:
            param.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"sft.freeze {parts} leaves nothing to train")


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def complete_checkpoints(output_dir: Path) -> list[Path]:
    return [p for p in output_dir.glob("checkpoint-*") if (p / STATE_FILE).is_file()]


def latest_checkpoint(output_dir: Path) -> Path | None:
    return max(complete_checkpoints(output_dir), key=_step_of, default=None)


def export_model(model, backend: HFBackend, source: str, out: Path) -> Path:
    """A plain checkpoint HFBackend loads: weights (LoRA merged into a copy) + the source's tokenizer files."""
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):  # peft: merge a copy, keep the trained adapters intact
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(out)
    src = Path(resolve_model(source))
    if src.is_dir():
        copy_model_files(src, out)
    else:
        backend.processor.save_pretrained(out)
    return out


def export_checkpoint(checkpoint: str | Path, base: str | Path, out: str | Path) -> Path:
    """A loadable model directory from a full fine-tuning checkpoint (its pytorch_model.bin, or for the PRPO trainer,
    which registers the model as its first checkpointed object, custom_checkpoint_0.pkl; a LoRA run's holds adapter
    keys: use its final export) and the model it was trained from (`base`: architecture, tokenizer, templates,
    preprocessor and reading configs), e.g. to evaluate a run before it ends:  python -c "from videomem.train.sft import export_checkpoint as e; e(CKPT, INIT, OUT)" """
    from transformers import AutoModelForImageTextToText

    checkpoint, base, out = Path(checkpoint), Path(base), Path(out)
    weights = checkpoint / "pytorch_model.bin"
    if not weights.is_file():
        weights = checkpoint / "custom_checkpoint_0.pkl"
    model = AutoModelForImageTextToText.from_pretrained(base)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    copy_model_files(base, out)
    return out


def copy_model_files(src: Path, out: Path) -> None:
    """What a model directory holds besides weights and model config: tokenizer, chat template, preprocessor configs,
    reading defaults (videomem.yaml)."""
    for f in src.iterdir():
        if f.is_file() and f.name not in ("config.json", "generation_config.json") and not f.name.startswith("model"):
            shutil.copy2(f, out / f.name)


# --- training -----------------------------------------------------------------------------------------------------


def train_sft(
    config: RunConfig, examples: list[SFTExample] | None = None, *, log: Callable[[str], None] = print
) -> Path:
    """Train `config.model.model` on `examples` (default: the records at config.sft.data) and return the exported
    model directory (`<output_dir>/final`). Resumes from the latest checkpoint in output_dir when sft.resume."""
    sft = config.sft
    if examples is None:
        if not sft.data:
            raise ConfigError("no training data: set sft.data to a chain-of-memory JSONL file")
        examples = load_examples(sft.data)
    if not examples:
        raise ConfigError("no training examples")
    out = Path(sft.output_dir)
    # Several processes on a machine without CUDA (torchrun / `accelerate launch --multi_gpu` on CPU): accelerate
    # picks MULTI_CPU (gloo) only when told cpu=True; `accelerate launch --cpu` itself starts a single process.
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(cpu=multi_cpu)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    set_seed(sft.seed)  # before LoRA init: adapters start the same on every process and every run

    backend = load_model(config, accelerator.device)
    trainable = [p for p in backend.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=sft.lr, betas=(sft.adam_beta1, sft.adam_beta2), weight_decay=sft.weight_decay)
    scheduler = get_scheduler(
        sft.lr_scheduler if sft.lr_scheduler != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=sft.warmup_steps,
        num_training_steps=sft.max_steps,
    )
    # Not passed through prepare: accelerate would step it once per process; registered so save_state includes it.
    accelerator.register_for_checkpointing(scheduler)
    model, optimizer = accelerator.prepare(backend.model, optimizer)

    step, position, num_tokens = 0, 0, 0
    ckpt = latest_checkpoint(out) if sft.resume else None
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / STATE_FILE).read_text())
        step, position, num_tokens = state["step"], state["position"], state["num_tokens"]
        # The checkpoint restores the lr it last used; the schedule of this run (e.g. a longer max_steps, or a new
        # sft.lr) decides this step's lr instead, else the first resumed step trains at the old (often ~0) rate.
        scheduler.base_lrs = [sft.lr for _ in optimizer.param_groups]
        for group, lr_at in zip(optimizer.param_groups, scheduler.lr_lambdas):
            group["lr"] = sft.lr * lr_at(scheduler.last_epoch)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports
        if main:
            log(f"resumed from {ckpt} at step {step}")
    metrics_path = out / METRICS_FILE
    if main:
        start_output_dir(out, config, step)

    enc = {
        "memory_budget": config.memory.max_tokens,
        "min_pixels": config.clips.min_pixels,
        "max_pixels": config.clips.max_pixels,
    }
    pad_id = backend.tokenizer.pad_token_id if backend.tokenizer.pad_token_id is not None else backend.stop_ids[0]
    per_step = world * sft.grad_accum * sft.batch_size  # examples one optimizer step consumes, all processes
    while step < sft.max_steps:
        started = time.perf_counter()
        indices = window(len(examples), sft.seed, position, per_step)
        # micro-batch a of this process: slice (a * world + rank) of the window
        micro = [indices[(a * world + rank) * sft.batch_size :][: sft.batch_size] for a in range(sft.grad_accum)]
        batches = [collate([encode_example(backend, examples[i], **enc) for i in idx], pad_id) for idx in micro]
        batches = [{k: v.to(accelerator.device) for k, v in b.items()} for b in batches]
        data_seconds = time.perf_counter() - started
        local_targets = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
        step_targets = accelerator.reduce(torch.tensor(local_targets, device=accelerator.device), "sum").item()

        loss_sum = correct = 0.0
        for a, batch in enumerate(batches):
            last = a == sft.grad_accum - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(model):
                mb_loss, _, mb_correct = target_loss(model, batch)
                # DDP averages gradients over processes: scale by world so the result is the global token mean
                accelerator.backward(mb_loss * world / step_targets)
            loss_sum += mb_loss.item()
            correct += mb_correct.item()
        grad_norm = accelerator.clip_grad_norm_(trainable, sft.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step, position = step + 1, position + per_step

        totals = accelerator.reduce(
            torch.tensor(
                [loss_sum, correct, sum(b["attention_mask"].sum().item() for b in batches)],
                device=accelerator.device,
                dtype=torch.float64,
            ),
            "sum",
        ).tolist()
        seconds = time.perf_counter() - started
        num_tokens += int(totals[2])
        row = {
            "step": step,
            "epoch": round(position / len(examples), 4),
            "loss": totals[0] / step_targets,
            "learning_rate": lr,
            "grad_norm": float(grad_norm),
            "mean_token_accuracy": totals[1] / step_targets,
            "num_tokens": num_tokens,  # input tokens trained on so far, all processes (TRL's name)
            "tokens_per_second": totals[2] / seconds,
            "samples_per_second": per_step / seconds,
            "step_seconds": round(seconds, 4),
            "data_seconds": round(data_seconds, 4),  # of which building inputs (processor path, per example)
        }
        if main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            log(
                f"step {step}/{sft.max_steps} loss {row['loss']:.4f} lr {lr:.2e} grad_norm {row['grad_norm']:.3f} "
                f"acc {row['mean_token_accuracy']:.3f} {row['samples_per_second']:.1f} samples/s "
                f"{row['tokens_per_second']:.0f} tok/s"
            )
        if step % sft.save_steps == 0 or step == sft.max_steps:
            save_checkpoint(
                accelerator, out / f"checkpoint-{step}", step=step, position=position, num_tokens=num_tokens
            )
            if main and sft.save_total_limit:
                for old in sorted(complete_checkpoints(out), key=_step_of)[: -sft.save_total_limit]:
                    shutil.rmtree(old, ignore_errors=True)

    final = out / FINAL_DIR
    if main:
        export_model(accelerator.unwrap_model(model), backend, config.model.model, final)
        log(f"model written to {final}")
    accelerator.wait_for_everyone()
    return final


def start_output_dir(out: Path, config: RunConfig, step: int) -> None:
    """Create the run's folder, record its config, and drop the metrics lines a crashed run wrote after `step` (its
    last checkpoint), so a resumed run's metrics.jsonl has each step once. Main process only."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.model_dump(), indent=2) + "\n")
    metrics_path = out / METRICS_FILE
    if metrics_path.exists():
        kept = [line for line in metrics_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        metrics_path.write_text("".join(line + "\n" for line in kept))


def save_checkpoint(accelerator: Accelerator, path: Path, **state: int) -> None:
    """Model, optimizer, scheduler and every process's RNG (accelerate's save_state), plus step and data position.
    trainer_state.json is written last: a directory without it is an interrupted save and is never resumed from."""
    # safetensors refuses tied weights (tie_word_embeddings) in a raw state dict; torch.save keeps them
    accelerator.save_state(str(path), safe_serialization=False)
    if accelerator.is_main_process:
        (path / STATE_FILE).write_text(json.dumps(state) + "\n")
    accelerator.wait_for_everyone()


def sft_command(config: RunConfig) -> Path:
    """What `videomem train sft` runs (under `accelerate launch` for several processes): train on config.sft.data."""
    return train_sft(config)

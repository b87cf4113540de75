"""PRPO (method.md 2.2): RL on the memory loop with Temporal Cascading Rewards and Progressive State Propagation.

    for each optimizer step:
        for each example (question, options, answer a*, clips 1..T) of this process's share:
            prpo:  M = ""; for t in 1..T:
                       G samples of ONE prompt (question, M, clip t): one prefill, G decodes   [backend.generate(n=G)]
                       R_i = alpha*cons_i + fmt_i - beta*overflow_i        (TCR; terminal: only at t = T)
                       A_i = (R_i - mean R) / (std R + eps)                (per step)
                       if t < T: j ~ softmax(A / tau_t), tau_t = tau0 * gamma^t; M = memory(O_j)   (PSP)
            grpo:  G chains, each carrying its own memory; step t's G samples (G prompts) form the group
        loss = sum over every token of every sample with A != 0 of
                   -min(ratio * A, clip(ratio, 1 - eps, 1 + eps_high) * A) + kl_coef * KL_k3
               / completion tokens of the step (all processes)          (token-level normalisation)
        clip grad norm, AdamW; log TRL-named metrics; checkpoint every save_steps (resumable)

Choices the paper leaves open, and departures from it and from vanilla GRPO (defaults in videomem.config.PRPOConfig):
- tau0 = 1.0, gamma = 0.7, with tau decaying in the clip index t as the paper's notation says (tau_1 = 0.7,
  tau_3 = 0.34: near-uniform early, near-argmax late).
- A group whose rewards are all equal has A = 0 everywhere: it trains nothing and PSP picks uniformly (method.md 4).
- PSP only considers samples with a readable memory (parse_step_output finds one); if none has one, the memory
  stays as it was, as at inference (the loop keeps the previous memory).
- Format reward: 1 when the sample is exactly `<memory>...</memory><answer>...</answer>`, optionally after one
  think block, with nothing else; the answer must be a single option letter. Consistency: the answer read by the
  one parser (videomem.parse) equals a*. Memory overflow counts the memory's tokens with the policy's tokenizer
  beyond memory.max_tokens.
- Terminal-only reward (the ablation): steps t < T get R = 0 for every sample, so A = 0 there and PSP is uniform;
  in grpo every step of a chain then shares the chain's final advantage, as in trajectory-level GRPO.
- grpo groups step t's samples across the G chains (their prompts differ): the same reward and advantage code as
  prpo, so the two variants differ only in how memory is carried and how often a prompt is encoded.
- Advantage std: unbiased (torch.std), eps 1e-4 (TRL). No std scaling option, no reward clipping.
- The update forwards a step's prompt once for its G samples too (shared_prompt_logprobs: the prompt's cache copied
  G times, gradients through it), for Qwen VL models; other architectures score prompt + completion per sample.
- Loss: TRL's "dapo"/token-level normalisation over all tokens of the optimizer step; clipped ratio with
  epsilon/epsilon_high (TRL names); KL to the starting model with the k3 estimator, off by default (TRL beta = 0).
  Log-probs use logits / temperature, as TRL does. Samples with A = 0 are not forwarded when kl_coef = 0: their
  loss and gradient are exactly zero.
- num_iterations = 1 by default: one update per batch of rollouts, so the ratio is 1 (clipping only acts with
  num_iterations > 1, where old log-probs are computed once before the first update).
- A sample that contains a vision placeholder token (an undertrained model can write one) keeps its reward and its
  place in the group's statistics but is left out of the loss: the model's forward would read it as a frame slot.
- Rollouts from a served model (rollouts = "backend"): the completion token ids it returns (or the text
  re-tokenised) are scored by the local policy; syncing the server's weights with the policy is left to the user.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from videomem.backends.base import Backend, Completion, SamplingParams
from videomem.config import RunConfig
from videomem.errors import ConfigError
from videomem.parse import LETTERS, parse_step_output
from videomem.train.batching import IGNORE_INDEX, collate, end_of_turn
from videomem.train.chain_data import Step, read_records, record_to_steps, step_frames
from videomem.train.sft import (
    METRICS_FILE,
    STATE_FILE,
    export_model,
    latest_checkpoint,
    save_checkpoint,
    start_output_dir,
    window,
)
from videomem.video.resize import resize_frame

_EXACT_FORMAT = re.compile(r"\s*(<think>.*?</think>\s*)?<memory>.*?</memory>\s*<answer>\s*[A-Z]\s*</answer>\s*", re.DOTALL)


# --- rewards, advantages, propagation (pure functions: tests/test_prpo.py checks them by hand) ----------------------


@dataclasses.dataclass
class Scored:
    """One sample of one step, with its reward parts."""

    completion: Completion
    memory: str | None  # the memory it wrote (None: unreadable)
    answer: str | None
    consistency: float
    format: float
    overflow: int  # memory tokens beyond L_max
    reward: float = 0.0
    advantage: float = 0.0


def tcr_reward(consistency: float, fmt: float, overflow: int, *, alpha: float, format_weight: float, beta: float) -> float:
    """Temporal Cascading Reward of one sample: alpha * cons + fmt - beta * max(0, memory tokens - L_max)."""
    return alpha * consistency + format_weight * fmt - beta * overflow


def group_advantages(rewards: list[float], eps: float) -> list[float]:
    """(R - mean) / (std + eps) over one group, unbiased std (TRL); all zero when the rewards are all equal."""
    r = torch.tensor(rewards, dtype=torch.float64)
    std = r.std() if len(rewards) > 1 else torch.tensor(0.0, dtype=torch.float64)
    if float(std) == 0.0:
        return [0.0] * len(rewards)
    return ((r - r.mean()) / (std + eps)).tolist()


def psp_temperature(t: int, tau0: float, gamma: float) -> float:
    """tau_t = tau0 * gamma^t, t the 1-based index of the step whose memory is carried on."""
    return tau0 * gamma**t


def psp_probabilities(advantages: list[float], tau: float, valid: list[bool]) -> list[float]:
    """softmax(A / tau) over the samples with a readable memory (0 for the others); all zero if none is readable."""
    if not any(valid):
        return [0.0] * len(advantages)
    logits = torch.tensor([a / tau if v else -math.inf for a, v in zip(advantages, valid)], dtype=torch.float64)
    return torch.softmax(logits, 0).tolist()


def psp_pick(advantages: list[float], tau: float, valid: list[bool], mode: str, rng: random.Random) -> int | None:
    """The sample whose memory goes on: drawn from psp_probabilities (mode "sample") or the best readable one (mode
    "argmax"; ties drawn uniformly); None when no sample has a readable memory."""
    probs = psp_probabilities(advantages, tau, valid)
    if not any(probs):
        return None
    if mode == "argmax":
        best = max(a for a, v in zip(advantages, valid) if v)
        return rng.choice([i for i, (a, v) in enumerate(zip(advantages, valid)) if v and a == best])
    return rng.choices(range(len(probs)), weights=probs)[0]


def clipped_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon: float,
    epsilon_high: float,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over masked tokens of the clipped surrogate (+ kl_coef * k3 KL), and its parts. logp, old_logp, ref_logp,
    mask: [B, L]; advantages: [B]. Divide by the step's token count for token-level normalisation."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    unclipped, clipped = ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high) * adv
    per_token = -torch.min(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if ref_logp is not None and kl_coef > 0:
        kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1  # k3, >= 0
        per_token = per_token + kl_coef * kl
    m = mask.to(logp.dtype)
    low = ((ratio < 1 - epsilon) & (adv < 0)).to(logp.dtype)  # TRL's clip_ratio/low: clipped below
    high = ((ratio > 1 + epsilon_high) & (adv > 0)).to(logp.dtype)
    parts = {"kl": (kl * m).sum(), "clip_low": (low * m).sum(), "clip_high": (high * m).sum()}
    return (per_token * m).sum(), parts


# --- rollouts ------------------------------------------------------------------------------------------------------


def score(completion: Completion, step: Step, final_answer: str, backend: Backend, config: RunConfig, final: bool) -> Scored:
    """Parse a sample and compute its reward parts (and R: TCR, or only at the last step for the terminal variant)."""
    p = config.prpo
    out = parse_step_output(completion.text, step.options)
    consistency = float(out.answer is not None and out.answer == final_answer)
    fmt = float(bool(_EXACT_FORMAT.fullmatch(completion.text)))
    overflow = max(0, backend.count_tokens(out.memory) - config.memory.max_tokens) if out.memory else 0
    s = Scored(completion, out.memory, out.answer, consistency, fmt, overflow)
    if p.reward == "tcr" or final:
        s.reward = tcr_reward(consistency, fmt, overflow, alpha=p.alpha, format_weight=p.format_reward, beta=p.beta)
    return s


@dataclasses.dataclass
class Sample:
    """What the loss needs of one sample: the prompt it was drawn from, its tokens, its advantage."""

    step: Step
    frames: list
    token_ids: list[int]
    advantage: float
    group: int  # index of its step group within the example
    scorable: bool = True  # False: it wrote a vision placeholder token, which the model's forward cannot take back in


def step_frames_sized(record: dict, step: Step, backend, config: RunConfig) -> list:
    """The clip's frames as the reader would size them for the policy."""
    c = config.clips
    return [resize_frame(f, backend.patch_factor, c.min_pixels, c.max_pixels) for f in step_frames(record, step)]


def rollout(record: dict, policy, sampler: Backend, config: RunConfig, rng: random.Random) -> tuple[list[Sample], list[list[Scored]]]:
    """All T*G samples of one example, and the scored groups (one per step) for the metrics."""
    p = config.prpo
    # RL records need no targets: the steps give the clips, the question and the options
    steps = record_to_steps({**record, "steps": record.get("steps") or [{"memory": "", "answer": ""}] * len(record["clips"])})
    answer, G, T = record["answer"], p.group_size, len(steps)
    eot = end_of_turn(policy.tokenizer)

    def draw(prompt: Step, frames, n: int) -> list[Completion]:
        sampling = SamplingParams(max_new_tokens=p.max_new_tokens, temperature=p.temperature, seed=rng.randrange(2**31))
        return sampler.generate(prompt.prompt(frames, config.memory.max_tokens), n=n, sampling=sampling)

    def tokens(c: Completion) -> list[int]:
        if c.token_ids is not None:
            return c.token_ids
        # a server that returns no token ids: re-tokenise, with the end-of-turn token it stopped at
        return policy.tokenizer.encode(c.text + (eot if c.finish_reason == "stop" else ""), add_special_tokens=False)

    placeholders = {getattr(policy.model.config, k, None) for k in ("image_token_id", "video_token_id")} - {None}
    samples, groups = [], []
    memories = [""] * (1 if p.variant == "prpo" else G)
    for t, step in enumerate(steps, start=1):
        frames = step_frames_sized(record, step, policy, config)
        prompts = [dataclasses.replace(step, memory_before=m) for m in memories]
        if p.variant == "prpo":  # one prompt, G samples: one prefill
            completions = draw(prompts[0], frames, G)
        else:  # G chains: G prompts, one sample each
            completions = [draw(s, frames, 1)[0] for s in prompts]
        scored = [score(c, step, answer, policy, config, final=t == T) for c in completions]
        advantages = group_advantages([s.reward for s in scored], p.adv_eps)
        for s, a in zip(scored, advantages):
            s.advantage = a
        groups.append(scored)
        for i, s in enumerate(scored):
            ids = tokens(s.completion)
            prompt = prompts[0 if p.variant == "prpo" else i]
            samples.append(Sample(prompt, frames, ids, s.advantage, t - 1, scorable=not placeholders & set(ids)))
        # the memory carried on is capped at L_max tokens, as the inference loop caps it
        cap = lambda m: policy.truncate_tokens(m, config.memory.max_tokens)
        if p.variant == "prpo" and t < T:
            j = psp_pick(advantages, psp_temperature(t, p.tau0, p.gamma), [s.memory is not None for s in scored], p.psp, rng)
            memories = [memories[0] if j is None else cap(scored[j].memory)]
        elif p.variant == "grpo":
            memories = [cap(s.memory) if s.memory is not None else m for s, m in zip(scored, memories)]
    if p.variant == "grpo" and p.reward == "terminal":  # trajectory-level GRPO: each chain's steps share its final A
        final_adv = [s.advantage for s in groups[-1]]
        for k, sample in enumerate(samples):
            sample.advantage = final_adv[k % G]
    return samples, groups


# --- scoring samples with the policy -------------------------------------------------------------------------------


def sample_batch(policy, group: list[Sample], config: RunConfig) -> dict[str, torch.Tensor]:
    """Model inputs for samples that share a prompt (prpo) or not (grpo): prompt + completion, labels on the
    completion (batching.collate pads them)."""
    encoded = []
    cache: dict[int, dict] = {}
    for s in group:
        key = id(s.step)
        if key not in cache:
            cache[key] = {k: v.cpu() for k, v in policy.encode(s.step.prompt(s.frames, config.memory.max_tokens)).items()}
        inputs = dict(cache[key])
        target = torch.tensor([s.token_ids], dtype=torch.long)
        n_prompt = inputs["input_ids"].shape[1]
        inputs["input_ids"] = torch.cat([inputs["input_ids"], target], 1)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(target)], 1)
        if "mm_token_type_ids" in inputs:
            inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(target)], 1)
        labels = torch.full_like(inputs["input_ids"], IGNORE_INDEX)
        labels[:, n_prompt:] = target
        inputs["labels"] = labels
        encoded.append(inputs)
    pad = policy.tokenizer.pad_token_id if policy.tokenizer.pad_token_id is not None else policy.stop_ids[0]
    return collate(encoded, pad)


def token_logprobs(model, batch: dict[str, torch.Tensor], temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the labels ([B, S-1]) under logits / temperature, and the label mask."""
    labels = batch["labels"][:, 1:]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float() / temperature
    mask = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return logp * mask, mask


def shared_prompt_logprobs(
    model, prompt_inputs: dict[str, torch.Tensor], completions: list[list[int]], temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs ([G, L]) and mask of G completions of ONE prompt, the prompt forwarded once: its cache is copied G
    times and the completions run on it, so gradients from all G reach the prompt's computation through the cache.
    Equal to scoring prompt + completion G times (tests/test_prpo.py), at the cost of one prompt instead of G.
    Qwen VL models (3D rotary positions continued from the prompt's rope_deltas)."""
    G, L = len(completions), max(map(len, completions))
    device = prompt_inputs["input_ids"].device
    model_core = getattr(model, "model", model)
    model_core.rope_deltas = None  # recomputed from this prompt (a stale one would shift every position)
    out = model(**prompt_inputs, use_cache=True, logits_to_keep=1)
    ids = torch.tensor([c + [0] * (L - len(c)) for c in completions], device=device)
    mask = torch.tensor([[1] * len(c) + [0] * (L - len(c)) for c in completions], device=device)
    first = torch.log_softmax(out.logits[:, -1].float() / temperature, -1)[0].gather(0, ids[:, 0])  # [G]
    if L == 1:
        return (first[:, None] * mask), mask.bool()
    cache = out.past_key_values
    cache.batch_repeat_interleave(G)
    P = prompt_inputs["input_ids"].shape[1]
    positions = (P + torch.arange(L - 1, device=device)).view(1, 1, -1).expand(3, G, -1)
    positions = positions + model_core.rope_deltas.view(1, -1, 1)
    rest = model(
        input_ids=ids[:, :-1],
        attention_mask=torch.cat([torch.ones(G, P, dtype=mask.dtype, device=device), mask[:, :-1]], 1),
        past_key_values=cache,
        position_ids=positions,
        mm_token_type_ids=torch.zeros(G, L - 1, dtype=torch.long, device=device),
    ).logits.float()
    rest = torch.log_softmax(rest / temperature, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # [G, L-1]
    return torch.cat([first[:, None], rest], 1) * mask, mask.bool()


def batch_logprobs(policy, model, batch: list[Sample], config: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and mask of a forward batch: one shared prompt forward when the samples share a prompt (prpo) and
    the model continues positions from a cache (Qwen VL), else prompt + completion per sample."""
    device = next(model.parameters()).device
    shared = all(s.step is batch[0].step for s in batch) and hasattr(getattr(model, "model", None), "rope_deltas")
    if shared:
        s = batch[0]
        inputs = {k: v.to(device) for k, v in policy.encode(s.step.prompt(s.frames, config.memory.max_tokens)).items()}
        return shared_prompt_logprobs(model, inputs, [x.token_ids for x in batch], config.prpo.temperature)
    inputs = {k: v.to(device) for k, v in sample_batch(policy, batch, config).items()}
    return token_logprobs(model, inputs, config.prpo.temperature)


# --- the trainer ---------------------------------------------------------------------------------------------------


def load_records(config: RunConfig) -> list[dict]:
    p = config.prpo
    if not p.data:
        raise ConfigError("no training data: set prpo.data to a JSONL of multiple-choice records")
    records = [r for r in read_records(p.data) if r.get("options") and r.get("answer") in LETTERS]
    if not records:
        raise ConfigError(f"{p.data}: no multiple-choice records (question, options, answer letter, clips)")
    return records


def train_prpo(
    config: RunConfig,
    records: list[dict] | None = None,
    *,
    sampler: Backend | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train the policy with PRPO (or a variant, config.prpo) and return the exported model (<output_dir>/final).
    `sampler`: a backend that draws the rollouts instead of the one prpo.rollouts names (e.g. a server client)."""
    from videomem.backends import load_backend
    from videomem.backends.hf import HFBackend

    p = config.prpo
    records = records if records is not None else load_records(config)
    out = Path(p.output_dir)
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(cpu=multi_cpu)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    if p.examples_per_step % world:
        raise ConfigError(f"prpo.examples_per_step ({p.examples_per_step}) must be a multiple of the processes ({world})")
    set_seed(p.seed)
    source = p.policy or config.model.model
    policy = HFBackend(source, device=str(accelerator.device), dtype="float32", frames_as=config.model.frames_as)
    if p.lora:
        from peft import LoraConfig, get_peft_model

        s = config.sft
        policy.model = get_peft_model(policy.model, LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                                                               target_modules=list(s.lora_target_modules), bias="none"))  # fmt: skip
    reference = None
    if p.kl_coef > 0:
        reference = HFBackend(source, device=str(accelerator.device), dtype="float32").model.eval()
        reference.requires_grad_(False)
    sampler = sampler or (policy if p.rollouts == "policy" else load_backend(config.model))
    trainable = [q for q in policy.model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=p.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, p.warmup_steps)))
    # No DDP wrapper: ranks can hold different numbers of samples with A != 0 (or none), so a backward per batch
    # would leave DDP's all-reduces unmatched; gradients are summed once per update instead (sync_gradients).
    model = policy.model
    accelerator.register_for_checkpointing(model, optimizer, scheduler)

    step, position = 0, 0
    ckpt = latest_checkpoint(out) if p.resume else None
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / STATE_FILE).read_text())
        step, position = state["step"], state["position"]
        if main:
            log(f"resumed from {ckpt} at step {step}")
    metrics_path = out / METRICS_FILE
    if main:
        start_output_dir(out, config, step)
    eps_high = p.epsilon if p.epsilon_high is None else p.epsilon_high

    while step < p.max_steps:
        started = time.perf_counter()
        mine = window(len(records), p.seed, position, p.examples_per_step)[rank::world]
        rng = random.Random(f"videomem-prpo/{p.seed}/{step}/{rank}")
        # 1. rollouts (no gradients; the policy as it is now is also the "old" policy of the clipped ratio)
        model.eval()
        samples, groups = [], []
        with torch.no_grad():
            for i in mine:
                s, g = rollout(records[i], policy, sampler, config, rng)
                samples += s
                groups += g
        rollout_seconds = time.perf_counter() - started
        model.train()
        # 2. the loss: only samples with A != 0 carry gradient (or every sample when a KL term is on)
        active = [s for s in samples if s.scorable and (s.advantage != 0.0 or p.kl_coef > 0)]
        local_tokens = sum(len(s.token_ids) for s in samples)
        step_tokens = accelerator.reduce(torch.tensor(local_tokens, device=accelerator.device), "sum").item()
        batches = _batches(active)
        old = []
        if p.num_iterations > 1:
            with torch.no_grad():
                old = [batch_logprobs(policy, model, b, config)[0] for b in batches]
        refs = []
        if reference is not None:
            with torch.no_grad():
                refs = [batch_logprobs(policy, reference, b, config)[0] for b in batches]
        totals = {"loss": 0.0, "kl": 0.0, "clip_low": 0.0, "clip_high": 0.0}
        for _ in range(p.num_iterations):
            for k, b in enumerate(batches):
                logp, mask = batch_logprobs(policy, model, b, config)
                adv = torch.tensor([s.advantage for s in b], device=logp.device, dtype=logp.dtype)
                loss_sum, parts = clipped_token_loss(
                    logp, old[k] if old else logp.detach(), adv, mask, epsilon=p.epsilon, epsilon_high=eps_high,
                    ref_logp=refs[k] if refs else None, kl_coef=p.kl_coef,
                )  # fmt: skip
                (loss_sum / max(step_tokens, 1) / p.num_iterations).backward()
                totals["loss"] += loss_sum.item() / p.num_iterations
                for key in ("kl", "clip_low", "clip_high"):
                    totals[key] += parts[key].item() / p.num_iterations
            sync_gradients(trainable, accelerator)
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, p.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step, position = step + 1, position + p.examples_per_step

        row = _metrics(groups, samples, totals, step_tokens, accelerator)
        row.update(step=step, learning_rate=lr, grad_norm=float(grad_norm), step_seconds=round(time.perf_counter() - started, 3),
                   rollout_seconds=round(rollout_seconds, 3))  # fmt: skip
        if main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            log(f"step {step}/{p.max_steps} reward {row['reward']:.3f} consistency {row['rewards/consistency/mean']:.3f} "
                f"format {row['rewards/format/mean']:.3f} zero-std groups {row['frac_reward_zero_std']:.2f} "
                f"loss {row['loss']:.4f} {row['step_seconds']:.1f} s")  # fmt: skip
        if step % p.save_steps == 0 or step == p.max_steps:
            save_checkpoint(accelerator, out / f"checkpoint-{step}", step=step, position=position)

    final = out / "final"
    if main:
        export_model(model, policy, source, final)
        log(f"model written to {final}")
    accelerator.wait_for_everyone()
    return final


def sync_gradients(params: list[torch.Tensor], accelerator: Accelerator) -> None:
    """Sum every process's gradients (each already divided by the step's global token count): one all-reduce per
    update whatever each process trained on."""
    if accelerator.num_processes == 1:
        return
    grads = [q.grad if q.grad is not None else torch.zeros_like(q) for q in params]
    flat = torch.cat([g.flatten() for g in grads])
    torch.distributed.all_reduce(flat)
    offset = 0
    for q, g in zip(params, grads):
        q.grad = flat[offset : offset + g.numel()].view_as(q).clone()
        offset += g.numel()


def _batches(samples: list[Sample], size: int = 8) -> list[list[Sample]]:
    """Forward batches of at most `size` samples, each either all of one prompt (prpo: scored with one shared prompt
    forward) or all of different prompts (grpo's chains: prompt + completion per row)."""
    out: list[list[Sample]] = []
    for s in samples:
        last = out[-1] if out else []
        same = bool(last) and all(x.step is s.step for x in last)
        distinct = len({id(x.step) for x in last} | {id(s.step)}) == len(last) + 1
        if last and len(last) < size and (same or distinct):
            last.append(s)
        else:
            out.append([s])
    return out


def _metrics(groups: list[list[Scored]], samples: list[Sample], totals: dict, step_tokens: int, accelerator) -> dict:
    """The step's metrics under TRL's GRPOTrainer names, summed over processes."""
    flat = [s for g in groups for s in g]
    lengths = [len(s.token_ids) for s in samples]
    local = torch.tensor(
        [len(flat), sum(s.reward for s in flat), sum(s.reward**2 for s in flat), sum(s.consistency for s in flat),
         sum(s.format for s in flat), sum(s.overflow for s in flat), len(groups),
         sum(1 for g in groups if len({s.reward for s in g}) == 1), sum(lengths),
         sum(1 for s in flat if s.completion.finish_reason == "length"), totals["loss"], totals["kl"],
         totals["clip_low"], totals["clip_high"], sum(1 for s in flat if s.answer == "A")],
        dtype=torch.float64, device=accelerator.device,
    )  # fmt: skip
    n, r, r2, cons, fmt, over, ngroups, zero, toks, clipped, loss, kl, low, high, first = accelerator.reduce(local, "sum").tolist()
    var = max(0.0, r2 / n - (r / n) ** 2)
    return {
        "reward": r / n,
        "reward_std": math.sqrt(var),
        "rewards/consistency/mean": cons / n,
        "rewards/format/mean": fmt / n,
        "rewards/memory_overflow/mean": over / n,
        "frac_reward_zero_std": zero / ngroups,
        "completions/mean_length": toks / n,
        "completions/clipped_ratio": clipped / n,
        "num_tokens": int(step_tokens),
        "loss": loss / max(step_tokens, 1),
        "kl": kl / max(step_tokens, 1),
        "clip_ratio/low_mean": low / max(step_tokens, 1),
        "clip_ratio/high_mean": high / max(step_tokens, 1),
        "clip_ratio/region_mean": (low + high) / max(step_tokens, 1),
        # not TRL's: a policy drifting to the first option (the SFT's guess before evidence) shows here first
        "answers/first_option_frac": first / n,
    }


def prpo_command(config: RunConfig) -> Path:
    """What `videomem train prpo` runs (under `accelerate launch` for several processes)."""
    return train_prpo(config)

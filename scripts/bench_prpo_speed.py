"""PRPO vs GRPO: wall-clock per training example, measured side by side in one run (issue 5).

    python scripts/bench_prpo_speed.py MODEL [--examples 4] [--group-size 8] [--max-new-tokens 160]

For each example (a synthetic 240 s video and one of its questions: T = 4 clips of 60 s x 16 frames, frames at most
128x128), both variants run on the same weights, alternating (prpo, grpo, prpo, ...) so machine noise hits both:
- rollout: T steps of G samples (prpo: one prompt per step, G samples from one prefill; grpo: G chains, G prompts per
  step, each encoded and prefilled on its own), through videomem.train.prpo.rollout;
- update: the loss forward and backward over all T*G samples, the trainer's path (videomem.train.prpo.batch_logprobs:
  prpo forwards a step's prompt once for its G samples); every sample counted active, so the work does not depend
  on the rewards.
Prints seconds per example for each part and variant, and the grpo/prpo ratios.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from videomem.backends.hf import HFBackend
from videomem.config import ClipConfig, load_config
from videomem.synth.scene import SynthSpec
from videomem.train.chain_data import synthetic_records
from videomem.train.prpo import _batches, batch_logprobs, clipped_token_loss, rollout


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--examples", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--seed", type=int, default=3, help="dataset seed of the benchmark videos")
    a = ap.parse_args(argv)
    clips = ClipConfig(clip_seconds=60, frames_per_clip=16, max_pixels=128 * 128, min_pixels=1024)
    records = []
    for v in range(a.examples):  # one question per video, families in turn
        recs = synthetic_records(SynthSpec(seed=a.seed * 1_000_003 + 500 + v), clips)
        records.append(recs[v % len(recs)])
    policy = HFBackend(a.model, dtype="float32")
    times: dict[str, dict[str, list[float]]] = {v: {"rollout": [], "update": [], "tokens": []} for v in ("prpo", "grpo")}
    for i, record in enumerate(records):
        for variant in ("prpo", "grpo") if i % 2 == 0 else ("grpo", "prpo"):
            cfg = load_config(None, {
                "model.model": a.model, "clips.clip_seconds": 60, "clips.frames_per_clip": 16,
                "clips.max_pixels": 128 * 128, "clips.min_pixels": 1024, "prpo.variant": variant,
                "prpo.group_size": a.group_size, "prpo.max_new_tokens": a.max_new_tokens,
            })  # fmt: skip
            t0 = time.perf_counter()
            with torch.no_grad():
                samples, _ = rollout(record, policy, policy, cfg, random.Random(i))
            t1 = time.perf_counter()
            policy.model.train()
            for batch in _batches([s for s in samples if s.scorable]):
                logp, mask = batch_logprobs(policy, policy.model, batch, cfg)
                adv = torch.ones(len(batch))
                clipped_token_loss(logp, logp.detach(), adv, mask, epsilon=0.2, epsilon_high=0.2)[0].backward()
            policy.model.zero_grad(set_to_none=True)
            policy.model.eval()
            t2 = time.perf_counter()
            times[variant]["rollout"].append(t1 - t0)
            times[variant]["update"].append(t2 - t1)
            times[variant]["tokens"].append(statistics.mean(len(s.token_ids) for s in samples))
            print(f"example {i} {variant}: rollout {t1 - t0:.1f} s, update {t2 - t1:.1f} s, "
                  f"mean completion {times[variant]['tokens'][-1]:.0f} tokens", flush=True)  # fmt: skip
    mean = {v: {k: statistics.mean(x) for k, x in parts.items()} for v, parts in times.items()}
    print(f"\nG = {a.group_size}, T = {len(records[0]['clips'])}, {a.examples} examples, model {a.model}")
    print("| variant | rollout s/example | update s/example | total s/example | mean completion tokens |")
    print("|---|---|---|---|---|")
    for v in ("prpo", "grpo"):
        m = mean[v]
        print(f"| {v} | {m['rollout']:.1f} | {m['update']:.1f} | {m['rollout'] + m['update']:.1f} | {m['tokens']:.0f} |")
    r = lambda k: mean["grpo"][k] / mean["prpo"][k]
    total = (mean["grpo"]["rollout"] + mean["grpo"]["update"]) / (mean["prpo"]["rollout"] + mean["prpo"]["update"])
    print(f"\ngrpo / prpo: rollout {r('rollout'):.2f}x, update {r('update'):.2f}x, total {total:.2f}x")


if __name__ == "__main__":
    main()

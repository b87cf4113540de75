"""Where PRPO's rewards push the first option: PRPO rollouts of a model (no update) on synthetic question records,
with, per clip t, the samples that answer (A) and the others: how many, their mean group-relative advantage and how
often they agree with the key (TCR's consistency). (A) is the chain-of-memory records' answer before any evidence.

    python scripts/prpo_rollout_answers.py runs/default-model-v12/final --examples 24 --data-seed 1

The rollouts are videomem.train.prpo.rollout's (one shared prompt, G = prpo.group_size samples per clip, PSP), on
--examples records drawn at random from dataset seed --data-seed (100 videos of 240 s, 8 questions each).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter, defaultdict

import torch

from videomem.backends.hf import HFBackend
from videomem.config import load_config
from videomem.synth.generate import dataset_specs
from videomem.train.chain_data import build_synthetic
from videomem.train.prpo import rollout


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--examples", type=int, default=24)
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--reward", choices=("tcr", "terminal"), default="tcr")
    a = ap.parse_args(argv)
    config = load_config(None, {"model.model": a.model, "prpo.reward": a.reward})
    records = list(build_synthetic(dataset_specs(a.data_seed, (1.0,), 100), config.clips))
    policy = HFBackend(a.model, dtype="float32")
    rng = random.Random(0)
    stats = defaultdict(lambda: [0, 0.0, 0.0])  # (t, "A" or "other") -> samples, sum of advantages, consistent
    chosen = random.Random(1).sample(range(len(records)), a.examples)
    keys = Counter(records[i]["answer"] for i in chosen)
    with torch.no_grad():
        for i in chosen:
            _, groups = rollout(records[i], policy, policy, config, rng)
            for t, group in enumerate(groups, start=1):
                for s in group:
                    row = stats[(t, "A" if s.answer == "A" else "other")]
                    row[0] += 1
                    row[1] += s.advantage
                    row[2] += s.consistency
    print(f"{a.model}, dataset seed {a.data_seed}, {a.examples} examples x G = {config.prpo.group_size}; keys: "
          + ", ".join(f"{k} {keys[k]}" for k in sorted(keys)))
    print("| clip | answer | samples | mean advantage | agree with the key |\n|---|---|---|---|---|")
    for (t, answer), (n, adv, agree) in sorted(stats.items()):
        print(f"| {t} | {answer} | {n} | {adv / n:+.3f} | {agree / n:.2f} |")


if __name__ == "__main__":
    main()

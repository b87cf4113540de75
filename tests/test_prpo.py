"""PRPO: rewards, advantages, propagation and the loss against hand-computed values; the trainer on a tiny model."""

import json
import math
import random

import pytest
import torch
from safetensors.torch import load_file

from videomem.backends.base import Completion
from videomem.config import ClipConfig, load_config
from videomem.models import build_tiny_vlm
from videomem.synth.scene import SynthSpec
from videomem.train.chain_data import synthetic_records
from videomem.train.prpo import (
    clipped_token_loss,
    group_advantages,
    psp_pick,
    psp_probabilities,
    psp_temperature,
    rollout,
    score,
    tcr_reward,
    train_prpo,
)
from videomem.train.sft import export_checkpoint

# --- hand-computed values --------------------------------------------------------------------------------------------


def test_tcr_reward_adds_consistency_and_format_and_charges_overflow():
    kw = {"alpha": 1.0, "format_weight": 1.0, "beta": 0.005}
    assert tcr_reward(1, 1, 0, **kw) == 2.0
    assert tcr_reward(0, 1, 0, **kw) == 1.0
    assert tcr_reward(1, 1, 200, **kw) == pytest.approx(1.0)  # 2 - 0.005 * 200
    assert tcr_reward(1, 0, 0, alpha=0.5, format_weight=1.0, beta=0.0) == 0.5


def test_group_advantages_normalise_per_group_and_zero_variance_gives_zero():
    # rewards 1, 0, 0, 1: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735
    a = group_advantages([1.0, 0.0, 0.0, 1.0], eps=1e-4)
    assert a == pytest.approx([0.86588, -0.86588, -0.86588, 0.86588], rel=1e-4)
    assert group_advantages([2.0, 2.0, 2.0], eps=1e-4) == [0.0, 0.0, 0.0]
    # 3, 1: mean 2, std sqrt(2) -> +-0.7071
    assert group_advantages([3.0, 1.0], eps=0.0) == pytest.approx([1 / math.sqrt(2), -1 / math.sqrt(2)])


def test_psp_temperature_decays_with_the_clip_index():
    assert psp_temperature(1, 1.0, 0.7) == pytest.approx(0.7)
    assert psp_temperature(3, 1.0, 0.7) == pytest.approx(0.343)
    assert psp_temperature(2, 2.0, 0.5) == pytest.approx(0.5)


def test_psp_probabilities_softmax_over_readable_memories():
    # A = 1, -1 at tau 0.5: softmax(2, -2) = e^2 / (e^2 + e^-2) = 0.98201
    assert psp_probabilities([1.0, -1.0], 0.5, [True, True]) == pytest.approx([0.98201, 0.01799], abs=1e-5)
    assert psp_probabilities([1.0, -1.0], 0.5, [False, True]) == pytest.approx([0.0, 1.0])
    assert psp_probabilities([0.0, 0.0, 0.0, 0.0], 0.1, [True] * 4) == pytest.approx([0.25] * 4)  # zero variance: uniform
    assert psp_probabilities([1.0, 2.0], 1.0, [False, False]) == [0.0, 0.0]


def test_psp_pick_samples_by_probability_argmax_takes_the_best_and_none_without_memory():
    rng = random.Random(0)
    picks = [psp_pick([1.0, -1.0], 0.5, [True, True], "sample", rng) for _ in range(4000)]
    assert picks.count(1) / len(picks) == pytest.approx(0.018, abs=0.008)
    assert {psp_pick([0.2, 1.5, 1.5, -1.0], 0.5, [True, True, False, True], "argmax", rng) for _ in range(50)} == {1}
    assert {psp_pick([0.0, 0.0], 1.0, [True, True], "argmax", rng) for _ in range(50)} == {0, 1}  # ties: either
    assert psp_pick([1.0, 0.0], 1.0, [False, False], "sample", rng) is None


def test_clipped_token_loss_on_a_toy_batch():
    ratios = torch.tensor([[1.5, 0.5], [1.5, 0.5]])
    old = torch.zeros(2, 2)
    logp = torch.log(ratios)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, parts = clipped_token_loss(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.2)
    # A = +1: -min(1.5, 1.2) = -1.2 and -min(0.5, 0.8) = -0.5; A = -1: -min(-1.5, -1.2) = 1.5 (second token masked)
    assert loss.item() == pytest.approx(-1.2 - 0.5 + 1.5)
    assert parts["clip_high"].item() == 1 and parts["clip_low"].item() == 0 and parts["kl"].item() == 0
    # a wider upper range lets the positive token through unclipped
    loss, _ = clipped_token_loss(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.6)
    assert loss.item() == pytest.approx(-1.5 - 0.5 + 1.5)
    # k3 KL to a reference: exp(ref - logp) - (ref - logp) - 1, here ref = 0 for every token
    loss_kl, parts = clipped_token_loss(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.2, ref_logp=old, kl_coef=0.1)
    k3 = lambda r: 1 / r + math.log(r) - 1
    assert parts["kl"].item() == pytest.approx(2 * k3(1.5) + k3(0.5), rel=1e-5)
    assert loss_kl.item() == pytest.approx(-0.2 + 0.1 * (2 * k3(1.5) + k3(0.5)), rel=1e-5)
    # the gradient: ratio 1 (first update) gives d loss / d logp = -A on every unmasked token
    logp = torch.zeros(2, 2, requires_grad=True)
    clipped_token_loss(logp, logp.detach(), adv, mask, epsilon=0.2, epsilon_high=0.2)[0].backward()
    assert logp.grad.tolist() == [[-1.0, -1.0], [1.0, 0.0]]


# --- scoring and rollouts on a tiny model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_vlm("qwen3_vl", tmp_path_factory.mktemp("prpo") / "m", text_hidden=64, vision_hidden=32)


def _config(tiny, tmp_path, **prpo):
    return load_config(None, {
        "model.model": str(tiny), "clips.max_pixels": 64 * 64, "clips.min_pixels": 1024, "memory.max_tokens": 8,
        "prpo.output_dir": str(tmp_path / "run"), "prpo.group_size": 3, "prpo.examples_per_step": 1,
        "prpo.max_new_tokens": 12, "prpo.lr": 1e-3, **{f"prpo.{k}": v for k, v in prpo.items()},
    })  # fmt: skip


def _records():
    cfg = ClipConfig(clips=3, frames_per_clip=2)
    return synthetic_records(SynthSpec(seed=5, base_seconds=120, width=64, height=64), cfg)[:2]


@pytest.fixture(scope="module")
def records():
    return _records()


class Counting:
    """The real backend, with its generate calls counted (how many prompts were encoded)."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []

    def generate(self, prompt, n=1, sampling=None):
        self.calls.append(n)
        return self.backend.generate(prompt, n=n, sampling=sampling)


def test_score_reads_format_consistency_and_overflow(tiny, tmp_path, records):
    from videomem.backends.hf import HFBackend
    from videomem.train.chain_data import record_to_steps

    policy = HFBackend(str(tiny))
    cfg = _config(tiny, tmp_path)
    step = record_to_steps(records[0])[0]
    key = records[0]["answer"]
    wrong = "A" if key != "A" else "B"
    ok = score(Completion(f"<memory>red star at 0:10</memory><answer>{key}</answer>", 0, 0), step, key, policy, cfg, final=False)
    assert (ok.consistency, ok.format, ok.reward) == (1.0, 1.0, 2.0) and ok.memory == "red star at 0:10"
    long = "word " * 40
    over = score(Completion(f"<memory>{long}</memory><answer>{wrong}</answer>", 0, 0), step, key, policy, cfg, final=False)
    n = policy.count_tokens(long.strip())
    assert over.overflow == n - 8 > 0 and over.reward == pytest.approx(1.0 - 0.005 * (n - 8))
    prose = score(Completion(f"I think {key}. <memory>x</memory><answer>{key}</answer>", 0, 0), step, key, policy, cfg, final=False)
    assert (prose.consistency, prose.format) == (1.0, 0.0)
    # terminal-only reward: nothing before the last step
    cfg_t = _config(tiny, tmp_path, reward="terminal")
    assert score(ok.completion, step, key, policy, cfg_t, final=False).reward == 0.0
    assert score(ok.completion, step, key, policy, cfg_t, final=True).reward == 2.0


def test_prpo_shares_one_prompt_per_step_and_grpo_runs_g_chains(tiny, tmp_path, records):
    from videomem.backends.hf import HFBackend

    policy = HFBackend(str(tiny))
    T = len(records[0]["clips"])
    for variant, calls in (("prpo", [3] * T), ("grpo", [1] * 3 * T)):
        sampler = Counting(policy)
        samples, groups = rollout(records[0], policy, sampler, _config(tiny, tmp_path, variant=variant), random.Random(0))
        assert sampler.calls == calls  # prpo: one prompt (one prefill) per step for all G samples
        assert len(samples) == 3 * T and [len(g) for g in groups] == [3] * T
        for t, g in enumerate(groups):
            assert [s.advantage for s in g] == pytest.approx(group_advantages([s.reward for s in g], 1e-4))
            assert [s.advantage for s in samples[3 * t : 3 * t + 3]] == [s.advantage for s in g]
        prompts = {id(s.step) for s in samples}
        assert len(prompts) == (T if variant == "prpo" else 3 * T)
        # the memory in step t+1's prompt is one of step t's sampled memories (prpo) / each chain's own (grpo)
        for t in range(T - 1):
            nxt = samples[3 * (t + 1)].step.memory_before
            assert nxt in {policy.truncate_tokens(s.memory, 8) for s in groups[t] if s.memory is not None} | {
                samples[3 * t].step.memory_before}


def test_train_prpo_logs_trl_metrics_checkpoints_and_resumes(tiny, tmp_path, records):
    logs = []
    cfg = _config(tiny, tmp_path, max_steps=1, save_steps=1)
    final = train_prpo(cfg, records, log=logs.append)
    assert (final / "model.safetensors").is_file() and (tmp_path / "run" / "checkpoint-1" / "trainer_state.json").is_file()
    cfg = _config(tiny, tmp_path, max_steps=2, save_steps=1)
    final = train_prpo(cfg, records, log=logs.append)
    assert any(m.startswith("resumed from") and "checkpoint-1" in m for m in logs)
    # a checkpoint exports to a model directory with the weights the run had at that step (here: its last)
    exported = export_checkpoint(tmp_path / "run" / "checkpoint-2", tiny, tmp_path / "exported")
    want, got = load_file(final / "model.safetensors"), load_file(exported / "model.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("reward", "reward_std", "rewards/consistency/mean", "rewards/format/mean", "frac_reward_zero_std",
                "completions/mean_length", "completions/clipped_ratio", "kl", "clip_ratio/region_mean", "loss"):  # fmt: skip
        assert key in rows[0], key
    assert 0 <= rows[0]["frac_reward_zero_std"] <= 1 and rows[0]["completions/mean_length"] > 0


class TwoAnswers:
    """Stands in for a served model (rollouts = "backend"): text only, no token ids, so the trainer re-tokenises.
    Half the samples answer the key, half another letter, both in the exact format."""

    def __init__(self, key: str):
        self.key, self.wrong = key, "A" if key != "A" else "B"

    def texts(self):
        return f"<memory>seen</memory><answer>{self.key}</answer>", f"<memory>seen</memory><answer>{self.wrong}</answer>"

    def generate(self, prompt, n=1, sampling=None):
        good, bad = self.texts()
        return [Completion(good if i % 2 == 0 else bad, 0, 0) for i in range(n)]


def test_one_prpo_step_makes_the_rewarded_answer_more_likely(tiny, tmp_path, records):
    from videomem.backends.hf import HFBackend
    from videomem.train.batching import end_of_turn
    from videomem.train.chain_data import record_to_steps
    from videomem.train.prpo import Sample, sample_batch, step_frames_sized, token_logprobs

    record = records[0]
    sampler = TwoAnswers(record["answer"])
    cfg = _config(tiny, tmp_path, group_size=4, max_steps=1, rollouts="backend")

    def margin(model_dir) -> float:
        policy = HFBackend(str(model_dir))
        step = record_to_steps(record)[0]
        frames = step_frames_sized(record, step, policy, cfg)
        ids = [policy.tokenizer.encode(t + end_of_turn(policy.tokenizer), add_special_tokens=False) for t in sampler.texts()]
        batch = sample_batch(policy, [Sample(step, frames, i, 0.0, 0) for i in ids], cfg)
        with torch.no_grad():
            logp, _ = token_logprobs(policy.model, batch, 1.0)
        good, bad = logp.sum(1).tolist()
        return good - bad

    before = margin(tiny)
    final = train_prpo(cfg, [record], sampler=sampler, log=lambda m: None)
    after = margin(final)
    assert after > before + 0.5, (before, after)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["rewards/consistency/mean"] == 0.5 and row["rewards/format/mean"] == 1.0 and row["frac_reward_zero_std"] == 0
    assert row["answers/first_option_frac"] == 0.5 * ((sampler.key == "A") + (sampler.wrong == "A"))


DDP_SCRIPT = '''
import json, sys
sys.path.insert(0, {tests!r})
from accelerate import PartialState
from test_prpo import TwoAnswers, _config, _records
from pathlib import Path
records = _records()
cfg = _config(Path({tiny!r}), Path({tmp!r}), group_size=4, max_steps=2, examples_per_step=2, rollouts="backend")
from videomem.train.prpo import train_prpo
train_prpo(cfg, records, sampler=TwoAnswers(records[0]["answer"]))
state = PartialState()
Path({tmp!r}, f"rank{{state.process_index}}.json").write_text(json.dumps(state.num_processes))
'''


def test_two_processes_under_accelerate_launch_match_one(tiny, tmp_path, records):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), tiny=str(tiny), tmp=str(tmp_path / "two")))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", str(script)]  # fmt: skip
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:-2000]
    assert [json.loads((tmp_path / "two" / f"rank{i}.json").read_text()) for i in range(2)] == [2, 2]
    assert proc.stdout.count("step 2/2") == 1  # only the main process logs
    two = [json.loads(x) for x in (tmp_path / "two" / "run" / "metrics.jsonl").read_text().splitlines()]
    # one process with both examples: the same rollouts (the sampler is deterministic), loss and gradient
    cfg = _config(tiny, tmp_path / "one", group_size=4, max_steps=2, examples_per_step=2, rollouts="backend")
    train_prpo(cfg, records, sampler=TwoAnswers(records[0]["answer"]), log=lambda m: None)
    one = [json.loads(x) for x in (tmp_path / "one" / "run" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(two, one, strict=True):
        assert a["num_tokens"] == b["num_tokens"] and a["reward"] == b["reward"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


def test_a_sample_with_a_vision_placeholder_token_is_kept_out_of_the_loss(tiny, tmp_path, records):
    """An undertrained policy can write <|video_pad|>; scoring it would make the forward expect another frame."""

    class WithPlaceholder(TwoAnswers):
        def generate(self, prompt, n=1, sampling=None):
            good, bad = self.texts()
            return [Completion(good, 0, 0), Completion("<|video_pad|>" + bad, 0, 0)] * (n // 2)

    cfg = _config(tiny, tmp_path, group_size=4, max_steps=1, rollouts="backend")
    train_prpo(cfg, [records[0]], sampler=WithPlaceholder(records[0]["answer"]), log=lambda m: None)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["rewards/consistency/mean"] == 0.5 and row["loss"] != 0.0  # the readable samples still train


def test_shared_prompt_scoring_equals_scoring_each_sample_with_its_prompt(tiny, tmp_path, records):
    from videomem.backends.hf import HFBackend
    from videomem.train.chain_data import record_to_steps
    from videomem.train.prpo import Sample, batch_logprobs, sample_batch, step_frames_sized, token_logprobs

    policy = HFBackend(str(tiny))
    cfg = _config(tiny, tmp_path)
    step = record_to_steps(records[0])[1]
    frames = step_frames_sized(records[0], step, policy, cfg)
    rng = random.Random(0)
    batch = [Sample(step, frames, [rng.randrange(10, 500) for _ in range(n)], 1.0, 0) for n in (5, 9, 1, 7)]

    def run(shared: bool):
        policy.model.zero_grad()
        if shared:
            logp, mask = batch_logprobs(policy, policy.model, batch, cfg)
        else:
            logp, mask = token_logprobs(policy.model, sample_batch(policy, batch, cfg), cfg.prpo.temperature)
        logp.sum().backward()
        values = [row[m].tolist() for row, m in zip(logp, mask)]
        return values, {n: q.grad.clone() for n, q in policy.model.named_parameters() if q.grad is not None}

    (full, g_full), (shared, g_shared) = run(False), run(True)
    assert [len(v) for v in shared] == [5, 9, 1, 7]
    for a, b in zip(full, shared):
        assert a == pytest.approx(b, abs=1e-5)
    assert g_full.keys() == g_shared.keys() and any("visual" in n for n in g_shared)  # the prompt's frames get gradient
    for n in g_full:
        assert (g_full[n] - g_shared[n]).abs().max() <= 1e-4 * g_full[n].abs().max(), n  # float32 sums: ~1e-6 apart


def test_forward_batches_keep_one_prompt_together_or_mix_only_distinct_prompts():
    from videomem.train.prpo import Sample, _batches

    a, b = object(), object()
    chains = [object() for _ in range(10)]
    prpo = [Sample(a, [], [1], 1.0, 0)] * 4 + [Sample(b, [], [1], 1.0, 1)] * 4
    assert [[s.step for s in batch] for batch in _batches(prpo, size=8)] == [[a] * 4, [b] * 4]
    grpo = [Sample(c, [], [1], 1.0, 0) for c in chains]
    assert [len(batch) for batch in _batches(grpo, size=8)] == [8, 2]

"""The SFT trainer (videomem/train/sft.py) on tiny Qwen2.5-VL and Qwen3-VL checkpoints, CPU, offline.

Most tests use hand-made steps (a four-clip "what colour is the car" chain over random frames); one trains on
chain-of-memory records from the synthetic builder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from videomem.backends.base import SamplingParams
from videomem.backends.hf import HFBackend
from videomem.config import RunConfig
from videomem.models import build_tiny_vlm
from videomem.train.batching import IGNORE_INDEX, SFTExample, collate, encode_example, end_of_turn, step_prompt
from videomem.train.chain_data import Step
from videomem.errors import ConfigError
from videomem.train.sft import export_checkpoint, model_part, train_sft
from videomem.video.plan import ClipSpec

ARCHS = ("qwen2_5_vl", "qwen3_vl")
MIN_PIXELS = 1024  # 64x64 test frames stay 56x56 (Qwen2.5-VL) / 64x64 (Qwen3-VL): 4 merged tokens per patch


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_models")
    return {a: build_tiny_vlm(a, root / a, text_hidden=64, vision_hidden=32) for a in ARCHS}


def _frames(seed: int):
    def render(timestamps):
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in timestamps]

    return render


def make_examples(n: int = 4) -> list[SFTExample]:
    """n steps of one chain: clip t sees the oracle memory after clip t-1 (teacher forcing)."""
    colours = ["red", "blue", "green", "yellow"]
    memories = [""] + [f"[{10 * t + 2}.0s] a {colours[t % 4]} car." for t in range(n)]
    return [
        SFTExample(
            Step(
                record_id="cars",
                index=t,
                num_clips=n,
                question="What colour is the car?",
                options=colours,
                memory_before=memories[t],
                clip=ClipSpec(t, 10.0 * t, 10.0 * t + 10, tuple(10.0 * t + s for s in (0, 2.5, 5, 7.5))),
                memory=memories[t + 1],
                answer="ABCD"[t % 4],
                final_answer=None,
            ),
            frames=_frames(t),
        )
        for t in range(n)
    ]


def make_config(checkpoint: Path, out: Path, **sft) -> RunConfig:
    base = {"output_dir": str(out), "max_steps": 4, "batch_size": 2, "warmup_steps": 2, "lr": 3e-3, "save_steps": 100}
    return RunConfig.model_validate(
        {"model": {"model": str(checkpoint)}, "clips": {"min_pixels": MIN_PIXELS}, "sft": {**base, **sft}}
    )


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("arch", ARCHS)
def test_labels_cover_exactly_the_target(checkpoints, arch):
    backend = HFBackend(str(checkpoints[arch]), device="cpu")
    example = make_examples()[1]
    inputs = encode_example(backend, example, min_pixels=MIN_PIXELS)
    prompt = step_prompt(example, backend, memory_budget=1024, min_pixels=MIN_PIXELS, max_pixels=128 * 32 * 32)
    prompt_ids = backend.encode(prompt)["input_ids"]  # the inference prompt, token for token
    n = prompt_ids.shape[1]
    assert torch.equal(inputs["input_ids"][:, :n], prompt_ids)
    assert (inputs["labels"][:, :n] == IGNORE_INDEX).all()
    supervised = inputs["labels"][inputs["labels"] != IGNORE_INDEX]
    assert torch.equal(supervised, inputs["input_ids"][0, n:])
    eot = end_of_turn(backend.tokenizer)
    assert eot == "<|im_end|>"
    assert backend.tokenizer.decode(supervised) == example.target + eot
    if "mm_token_type_ids" in inputs:  # target tokens are text (0); the video's are 2
        assert (inputs["mm_token_type_ids"][:, n:] == 0).all() and (inputs["mm_token_type_ids"] == 2).any()

    # padding two examples of different lengths: pad rows are masked and never supervised
    other = encode_example(backend, make_examples()[0], min_pixels=MIN_PIXELS)
    batch = collate([inputs, other], backend.tokenizer.pad_token_id)
    short = 1 if other["input_ids"].shape[1] < inputs["input_ids"].shape[1] else 0
    width = batch["input_ids"].shape[1]
    length = [inputs, other][short]["input_ids"].shape[1]
    assert (
        batch["attention_mask"][short, length:].sum() == 0 and (batch["labels"][short, length:] == IGNORE_INDEX).all()
    )
    assert width == max(inputs["input_ids"].shape[1], other["input_ids"].shape[1])


def test_loss_spans_label_only_the_target_tokens_inside_them(checkpoints):
    backend = HFBackend(str(checkpoints["qwen3_vl"]), device="cpu")
    example = make_examples()[2]  # target <memory>[22.0s] a green car.</memory><answer>C</answer>
    start = example.target.index("green")
    spans = ((start, start + len("green car")),)
    inputs = encode_example(backend, dataclasses.replace(example, loss_spans=spans), min_pixels=MIN_PIXELS)
    full = encode_example(backend, example, min_pixels=MIN_PIXELS)
    assert torch.equal(inputs["input_ids"], full["input_ids"])
    supervised = inputs["labels"][inputs["labels"] != IGNORE_INDEX]
    assert backend.tokenizer.decode(supervised).replace(" ", "") == "greencar"



def test_weighted_spans_scale_their_tokens_loss_and_mix_with_unweighted_rows(checkpoints):
    from videomem.train.sft import target_loss

    backend = HFBackend(str(checkpoints["qwen3_vl"]), device="cpu")
    model = backend.model
    example = make_examples()[2]  # target <memory>[22.0s] a green car.</memory><answer>C</answer>
    start = example.target.index("green")
    weighted = dataclasses.replace(example, weighted_spans=((start, start + len("green car"), 3.0),))
    inputs = encode_example(backend, weighted, min_pixels=MIN_PIXELS)
    plain = encode_example(backend, example, min_pixels=MIN_PIXELS)
    n = int((plain["labels"][0] != IGNORE_INDEX).nonzero()[0])  # the first target token
    heavy = inputs["loss_weights"][0, n:] == 3.0
    assert backend.tokenizer.decode(inputs["input_ids"][0, n:][heavy]).replace(" ", "") == "greencar"
    assert (inputs["loss_weights"][0, :n] == 1).all() and (inputs["loss_weights"][0, n:][~heavy] == 1).all()

    pad = backend.tokenizer.pad_token_id
    other = encode_example(backend, make_examples()[0], min_pixels=MIN_PIXELS)  # no weights: every token 1
    with torch.no_grad():
        (w_sum, w_count, _), (p_sum, p_count, _) = (target_loss(model, collate([x, other], pad)) for x in (inputs, plain))
        logits = model(**{k: v for k, v in plain.items() if k != "labels"}).logits[0, :-1]
        token = torch.nn.functional.cross_entropy(logits, plain["labels"][0, 1:], reduction="none")
    extra = 2.0 * token[n - 1 :][heavy].sum()  # the span's tokens counted twice more (token i+1 predicted at i)
    assert w_count == p_count
    assert math.isclose(w_sum.item(), p_sum.item() + extra.item(), rel_tol=1e-4)

@pytest.mark.parametrize("arch", ARCHS)
def test_overfits_a_few_examples_and_exports_a_loadable_model(checkpoints, arch, tmp_path):
    """A real behaviour check: 30 steps on 4 examples drive the target loss well down; the exported model loads
    through HFBackend (same weights) and generates."""
    out = tmp_path / "run"
    final = train_sft(
        make_config(checkpoints[arch], out, max_steps=30, batch_size=4), make_examples(), log=lambda s: None
    )
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows)
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
    assert rows[0]["learning_rate"] == 0.0 and max(r["learning_rate"] for r in rows) == pytest.approx(3e-3)
    assert rows[-1]["samples_per_second"] > 0 and rows[-1]["tokens_per_second"] > 0

    backend = HFBackend(str(final), device="cpu")
    trained = torch.load(out / "checkpoint-30" / "pytorch_model.bin", weights_only=True)
    loaded = backend.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in trained.items() if k in loaded)
    prompt = step_prompt(make_examples()[0], backend, memory_budget=1024, min_pixels=MIN_PIXELS, max_pixels=131072)
    completion = backend.generate(prompt, sampling=SamplingParams(max_new_tokens=12))[0]
    assert completion.completion_tokens > 0
    # a checkpoint exported on its own (to evaluate a run before it ends) is the same model
    exported = HFBackend(str(export_checkpoint(out / "checkpoint-30", checkpoints[arch], tmp_path / "exp")), device="cpu")
    assert exported.generate(prompt, sampling=SamplingParams(max_new_tokens=12))[0].text == completion.text


def test_lora_trains_only_the_adapters(checkpoints, tmp_path):
    arch = "qwen3_vl"
    out = tmp_path / "lora"
    final = train_sft(
        make_config(checkpoints[arch], out, lora=True, lora_target_modules=["q_proj", "v_proj"]),
        make_examples(),
        log=lambda s: None,
    )
    base = HFBackend(str(checkpoints[arch]), device="cpu").model.state_dict()
    state = torch.load(out / "checkpoint-4" / "pytorch_model.bin", weights_only=True)
    adapters = {k: v for k, v in state.items() if "lora_" in k}
    assert adapters and any("lora_B" in k and v.abs().sum() > 0 for k, v in adapters.items())  # B starts at 0
    for key, value in state.items():
        if "lora_" in key:
            continue
        name = key.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(value, base[name]), f"base weight {name} changed"
    merged = HFBackend(str(final), device="cpu").model.state_dict()  # export merges the adapters
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("frozen", [("language",), ("vision",)])
def test_freeze_keeps_a_part_fixed_and_trains_the_rest(checkpoints, arch, frozen, tmp_path):
    final = train_sft(make_config(checkpoints[arch], tmp_path / "out", freeze=list(frozen)), make_examples(),
                      log=lambda s: None)  # fmt: skip
    base = HFBackend(str(checkpoints[arch]), device="cpu").model.state_dict()
    trained = HFBackend(str(final), device="cpu").model.state_dict()
    changed = {k for k in base if not torch.equal(base[k], trained[k])}
    parts = {k: model_part(k) for k in base}
    assert {parts[k] for k in changed} == {"vision", "language", "projector"} - set(frozen)
    assert sum(parts[k] == "projector" for k in base) > 0 and sum(parts[k] == "vision" for k in base) > 0


def test_freezing_every_part_is_a_config_error(checkpoints, tmp_path):
    with pytest.raises(ConfigError, match="nothing to train"):
        train_sft(make_config(checkpoints["qwen3_vl"], tmp_path / "out", freeze=["vision", "language"], lora=True,
                              lora_target_modules=["q_proj"]), make_examples(), log=lambda s: None)  # fmt: skip


def test_gradient_accumulation_matches_a_bigger_batch(checkpoints, tmp_path):
    """accum 2 x batch 1 == batch 2: same examples in the step, loss normalised over the step's target tokens."""
    ck = checkpoints["qwen2_5_vl"]
    examples = make_examples()
    train_sft(make_config(ck, tmp_path / "big", max_steps=2, batch_size=2), examples, log=lambda s: None)
    train_sft(make_config(ck, tmp_path / "acc", max_steps=2, batch_size=1, grad_accum=2), examples, log=lambda s: None)
    for big, acc in zip(metrics(tmp_path / "big"), metrics(tmp_path / "acc"), strict=True):
        assert acc["loss"] == pytest.approx(big["loss"], rel=1e-5)
        assert acc["grad_norm"] == pytest.approx(big["grad_norm"], rel=1e-4)
        assert acc["mean_token_accuracy"] == big["mean_token_accuracy"]


class _Crash(Exception):
    pass


def test_resume_continues_exactly(checkpoints, tmp_path):
    ck = checkpoints["qwen2_5_vl"]
    examples = make_examples(3)  # 3 examples, batch 2: steps straddle epochs, so the data position matters
    whole = tmp_path / "whole"
    train_sft(make_config(ck, whole, max_steps=6, save_steps=3), examples, log=lambda s: None)

    def crash_at_step_5(line: str):
        if line.startswith("step 5/"):
            raise _Crash

    cut = tmp_path / "cut"
    with pytest.raises(_Crash):
        train_sft(make_config(ck, cut, max_steps=6, save_steps=3), examples, log=crash_at_step_5)
    assert [r["step"] for r in metrics(cut)] == [1, 2, 3, 4, 5]
    lines = []
    train_sft(make_config(ck, cut, max_steps=6, save_steps=3), examples, log=lines.append)
    assert lines[0].startswith("resumed from") and "checkpoint-3" in lines[0]
    a, b = metrics(whole), metrics(cut)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]  # the crashed run's steps 4-5 were dropped and redone
    for x, y in zip(a, b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-6, abs=1e-7)
        assert y["learning_rate"] == pytest.approx(x["learning_rate"])
        assert (y["epoch"], y["num_tokens"]) == (x["epoch"], x["num_tokens"])
    assert sorted(p.name for p in cut.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]


def test_resuming_with_a_longer_schedule_uses_the_new_schedule_from_the_first_step(checkpoints, tmp_path):
    """A finished 4-step run resumed with max_steps 8: step 5 trains at the 8-step cosine's lr, not at the ~0 the
    checkpoint ended with; and only the newest save_total_limit checkpoints are kept."""
    ck, examples = checkpoints["qwen2_5_vl"], make_examples(2)
    out = tmp_path / "run"
    train_sft(make_config(ck, out, max_steps=4, save_steps=1, warmup_steps=0, save_total_limit=2), examples,
              log=lambda s: None)  # fmt: skip
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    train_sft(make_config(ck, out, max_steps=8, save_steps=1, warmup_steps=0, lr=1e-3), examples, log=lambda s: None)
    lrs = [r["learning_rate"] for r in metrics(out)]
    assert lrs[3] == pytest.approx(3e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))  # the old run (lr 3e-3), last step
    for k in range(4, 8):  # cosine over 8 steps at the new peak lr
        assert lrs[k] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * k / 8)))


def test_trains_on_chain_of_memory_records_from_jsonl(checkpoints, tmp_path):
    """The data path of `videomem train sft`: records written by the chain-of-memory builder, one step each."""
    from videomem.config import ClipConfig
    from videomem.synth.scene import SynthSpec
    from videomem.train.chain_data import append_record, synthetic_records
    from videomem.train.sft import load_examples

    data = tmp_path / "chain.jsonl"
    records = synthetic_records(SynthSpec(seed=3, width=64, height=64), ClipConfig(frames_per_clip=4))
    for record in records:
        append_record(data, record)
    examples = load_examples(data)
    assert len(examples) == sum(len(r["steps"]) for r in records)
    assert examples[1].step.memory_before == records[0]["steps"][0]["memory"]  # teacher forcing: the oracle M_{t-1}
    cfg = make_config(checkpoints["qwen3_vl"], tmp_path / "run", max_steps=2, data=str(data))
    train_sft(cfg, log=lambda s: None)
    assert [r["step"] for r in metrics(tmp_path / "run")] == [1, 2]


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from accelerate import PartialState
    sys.path.insert(0, {tests!r})
    from test_sft import make_config, make_examples
    from videomem.train.sft import train_sft
    train_sft(make_config({ck!r}, {out!r}, max_steps=2, save_steps=2), make_examples(), log=print)
    state = PartialState()  # after train_sft: its Accelerator set up the process group
    # one file per rank: two processes printing to one pipe can interleave their lines
    with open({out!r} + f"-rank{{state.process_index}}.json", "w") as f:
        json.dump({{"rank": state.process_index, "world": state.num_processes}}, f)
    """
)


def test_two_processes_under_accelerate_launch(checkpoints, tmp_path):
    out = tmp_path / "ddp"
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), ck=str(checkpoints["qwen3_vl"]), out=str(out)))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    # `--cpu` would start ONE process (accelerate runs several CPU processes only through mpirun); torchrun's
    # launcher (--multi_gpu) starts two and the trainer turns them into a gloo group on a machine without CUDA.
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        str(script),
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-6000:-2000]
    ranks = [json.loads(Path(f"{out}-rank{i}.json").read_text()) for i in range(2)]
    assert ranks == [{"rank": 0, "world": 2}, {"rank": 1, "world": 2}]
    assert proc.stdout.count("step 2/2") == 1  # only the main process logs
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert rows[0]["epoch"] == 1.0  # 2 processes x batch 2 = all 4 examples per step
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    files = sorted(p.name for p in (out / "checkpoint-2").iterdir())
    assert files.count("pytorch_model.bin") == 1 and "random_states_1.pkl" in files
    assert (out / "final" / "model.safetensors").is_file()
    # DDP over 2 x batch 2 is one batch of 4: same loss and gradient norm as a single process
    train_sft(
        make_config(checkpoints["qwen3_vl"], tmp_path / "one", max_steps=2, batch_size=4),
        make_examples(),
        log=lambda s: None,
    )
    for two, one in zip(rows, metrics(tmp_path / "one"), strict=True):
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
        assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)


def test_sft_config_survives_a_json_round_trip():
    """Run headers store RunConfig as JSON and compare it on resume: every sft field must read back equal."""
    dump = RunConfig().model_dump()
    assert json.loads(json.dumps(dump)) == dump
    assert RunConfig.model_validate(json.loads(json.dumps(dump))) == RunConfig()

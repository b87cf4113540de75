"""The tiny checkpoint builder: real architectures that load through transformers' Auto classes, offline."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # prove nothing is fetched

import pytest
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

from videomem.backends.video_processing import load_processor
from videomem.models import ARCHS, build_tiny_vlm, train_tokenizer

MODEL_CLASSES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
}
PROCESSOR_CLASSES = {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor", "smolvlm": "SmolVLMProcessor"}
SPECIALS = {
    "qwen2_5_vl": ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|video_pad|>"],
    "qwen3_vl": ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|video_pad|>", "<think>"],
    "smolvlm": ["<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every architecture at default sizes (what the builder promises: ~1M parameters, a few MB)."""
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_vlm(arch, root / arch) for arch in ARCHS}


def _param_count(path) -> int:
    with safe_open(path / "model.safetensors", "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (safe_open is not iterable)


NEEDS_NUM2WORDS = pytest.mark.skipif(
    importlib.util.find_spec("num2words") is None, reason="SmolVLM's processor needs the num2words package"
)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl", pytest.param("smolvlm", marks=NEEDS_NUM2WORDS)])
def test_checkpoint_loads_through_auto_classes(built, arch):
    path = built[arch]
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__name__ == MODEL_CLASSES[arch]
    processor = load_processor(str(path))  # AutoProcessor itself where torchvision exists
    assert type(processor).__name__ == PROCESSOR_CLASSES[arch]
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    image_slot = "<image>" if arch == "smolvlm" else "<|vision_start|><|image_pad|><|vision_end|>"
    assert image_slot in text and "What is shown?" in text
    assert text.endswith("Assistant:" if arch == "smolvlm" else "<|im_start|>assistant\n")


@pytest.mark.parametrize("arch", ARCHS)
def test_default_size_is_about_a_million_parameters(built, arch):
    n = _param_count(built[arch])
    assert 500_000 < n < 1_500_000
    assert sum(f.stat().st_size for f in built[arch].iterdir()) < 5e6


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_has_family_specials_and_round_trips_prompt_text(built, arch):
    tok = AutoTokenizer.from_pretrained(built[arch])
    assert len(tok) == 1000
    for special in SPECIALS[arch]:
        assert tok.encode(special, add_special_tokens=False) == [tok.convert_tokens_to_ids(special)]
    text = "<memory>[12.5s] a man opens the door (B).</memory><answer>C</answer> 00:03:59 ünïcode ✓"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    # trained on the prompt vocabulary: common words are single tokens, not bytes
    assert len(tok.encode(" memory answer question video", add_special_tokens=False)) <= 6


def test_vocab_size_is_configurable_and_exact():
    for size in (400, 2000):
        assert len(train_tokenizer("qwen2_5_vl", size)) == size
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer("qwen3_vl", 200)


def test_sizes_reach_the_config(tmp_path):
    path = build_tiny_vlm(
        "qwen3_vl",
        tmp_path / "m",
        text_hidden=96,
        text_layers=3,
        text_heads=6,
        text_kv_heads=2,
        vision_hidden=48,
        vision_depth=3,
        vision_heads=4,
        vocab_size=600,
    )
    config = AutoConfig.from_pretrained(path)
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (
        96,
        3,
        6,
        2,
    )
    assert (vision.hidden_size, vision.depth, vision.num_heads, vision.out_hidden_size) == (48, 3, 4, 96)
    assert text.vocab_size == 600
    # 3D rotary sections cover exactly half the head dimension (else the model fails at the first forward)
    assert sum(text.rope_parameters["mrope_section"]) == text.head_dim // 2 == 8


def test_build_is_deterministic_and_seeded(tmp_path):
    def digest(path):
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in path.iterdir()}

    a = digest(build_tiny_vlm("qwen2_5_vl", tmp_path / "a", text_hidden=64, vision_hidden=32))
    b = digest(build_tiny_vlm("qwen2_5_vl", tmp_path / "b", text_hidden=64, vision_hidden=32))
    c = digest(build_tiny_vlm("qwen2_5_vl", tmp_path / "c", text_hidden=64, vision_hidden=32, seed=1))
    assert a == b
    assert a["model.safetensors"] != c["model.safetensors"] and a["tokenizer.json"] == c["tokenizer.json"]


def test_rejects_unknown_arch_and_bad_heads(tmp_path):
    with pytest.raises(ValueError, match="unknown arch"):
        build_tiny_vlm("llava", tmp_path / "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="divide"):
        build_tiny_vlm("qwen3_vl", tmp_path / "y", text_hidden=100, text_heads=3)


def test_extra_corpus_makes_domain_words_single_tokens():
    words = " TIGER WHALE PIANO"
    plain = train_tokenizer("qwen3_vl", 1500)
    domain = train_tokenizer("qwen3_vl", 1500, extra_corpus=[f"a red star with{words}"] * 50)
    assert len(plain.encode(words, add_special_tokens=False)) > 3
    assert domain.tokenize(words) == ["ĠTIGER", "ĠWHALE", "ĠPIANO"]
    assert domain.decode(domain.encode(words, add_special_tokens=False)) == words

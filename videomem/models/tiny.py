"""Tiny, randomly initialised checkpoints of real transformers VLM architectures.

Each checkpoint is a directory that loads exactly like a hub model, through
`AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained`: the architecture's own config
and weights (`save_pretrained`), a byte-level BPE tokenizer trained here on a built-in corpus (English words and
the vocabulary of videomem's prompts) with the family's special tokens, the family's chat template, and the
preprocessor configs in the hub repositories' layout (Qwen2.5-VL: `preprocessor_config.json` only, as on the hub;
Qwen3-VL: image and video configs). Tests load them offline; a later training run starts from one.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

Arch = Literal["qwen2_5_vl", "qwen3_vl", "smolvlm"]
ARCHS: tuple[Arch, ...] = ("qwen2_5_vl", "qwen3_vl", "smolvlm")

# --- tokens -----------------------------------------------------------------------------------------------------

# The special tokens of the Qwen2-VL/2.5-VL/3-VL tokenizers, in their hub order (ids follow the BPE vocabulary).
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Qwen3 adds these as ordinary (non-special) added tokens: decoding keeps them.
QWEN3_ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<think>", "</think>"]
# SmolLM2's specials plus the image tokens SmolVLM's processor writes (image splitting is off, so no <row_i_col_j>).
SMOLVLM_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
]

# Qwen2's pre-tokenizer: contractions, letter runs, single digits, punctuation runs, whitespace.
QWEN_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

_ENGLISH = """
the of and to a in is it you that he was for on are with as his they be at one have this from or had by not word
but what some we can out other were all there when up use your how said an each she which do their time if will way
about many then them write would like so these her long make thing see him two has look more day could go come did
number sound no most people my over know water than call first who may down side been now find any new work part take
get place made live where after back little only round man year came show every good me give our under name very
through just form sentence great think say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand port large spell add even land here must
big high such follow act why ask men change went light kind off need house picture try us again animal point mother
world near build self earth father head stand own page should country found answer school grow study still learn plant
cover food sun four between state keep eye never last let thought city tree cross farm hard start might story saw far
sea draw left late run while press close night real life few north open seem together next white children begin got
walk example ease paper group always music those both mark often letter until mile river car feet care second book
carry took science eat room friend began idea fish mountain stop once base hear horse cut sure watch color face wood
main enough plain girl usual young ready above ever red list though feel talk bird soon body dog family direct pose
leave song measure door product black short numeral class wind question happen complete ship area half rock order fire
south problem piece told knew pass since top whole king space heard best hour better true during hundred five remember
step early hold west ground interest reach fast verb sing listen six table travel less morning ten simple several vowel
toward war lay against pattern slow center love person money serve appear road map rain rule govern pull cold notice
voice unit power town fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest able
pound done beauty drive stood contain front teach week final gave green quick develop ocean warm free minute strong
special mind behind clear tail produce fact street inch multiply nothing course stay wheel full force blue object decide
surface deep moon island foot system busy test record boat common gold possible plane stead dry wonder laugh thousand
ago ran check game shape equate miss brought heat snow tire bring yes distant fill east paint language among kitchen
person woman holds opens closes walks runs sits stands enters leaves picks puts table chair phone screen camera scene
"""

# The vocabulary of videomem's step prompts and outputs: instructions, tags, options, timestamps.
_PROMPT_TEXT = """
You are watching a long video one clip at a time. You cannot see earlier clips again: only your memory carries them.
Question: What happens after the man opens the door? Options: (A) he sits down (B) he leaves (C) he picks up a phone
(D) he turns off the light. Memory so far: (empty). Read the frames of this clip, then rewrite the whole memory so that
it keeps what matters for the question and drops the rest, and give your current answer.
Answer with exactly <memory>...</memory><answer>...</answer> and nothing else.
<memory>[12.5s] a man in a red shirt opens the door. [40.0s] he picks up a phone.</memory><answer>C</answer>
<memory></memory><answer>A</answer> <memory>no relevant event yet.</memory><answer>B</answer>
Clip 2 of 4, from 00:01:30 to 00:03:00. Frames at 90.0s, 96.0s, 102.0s. The answer is the letter of the best option.
Frame from 00:12: Video 1: Picture 1: <0.5 seconds> <12.5 seconds> [0.0s] [1.5s] [2.0s] [59.5s] [120.0s] [3599.5s]
What color is the car? How many people are in the room? Which came first? When does the woman enter the kitchen?
"""


def _corpus() -> list[str]:
    """Fixed training text: the word lists, the prompt text, and numbers/timestamps/tags in the forms prompts use."""
    rng = random.Random(0)
    words = _ENGLISH.split()
    # inflected and capitalised forms give the BPE trainer enough distinct words for vocabularies up to ~2000
    forms = [f"{w} {w}s {w}ed {w}ing {w.capitalize()} {w.upper()}" for w in words]
    lines = [_ENGLISH] * 4 + [_PROMPT_TEXT] * 40 + forms  # prompt words weigh most: they merge first
    for _ in range(300):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        lines.append(sentence.capitalize() + rng.choice([".", "?", "!", ","]))
    for _ in range(200):
        t = rng.randint(0, 36000) / 2
        letter = rng.choice("ABCDE")
        lines.append(
            f"[{t:.1f}s] <{t:.1f} seconds> {int(t) // 3600:02d}:{int(t) % 3600 // 60:02d}:{int(t) % 60:02d} "
            f"({letter}) <answer>{letter}</answer> {rng.randint(0, 10**6)}"
        )
    return lines


def train_tokenizer(arch: Arch, vocab_size: int = 1000, extra_corpus: Sequence[str] = ()):
    """A byte-level BPE tokenizer of exactly `vocab_size` tokens (specials included) in the family's tokenizer class.
    `extra_corpus`: domain text trained on with the built-in corpus (the default model adds its synthetic questions
    and memories, so their words become single tokens: shorter sequences and one token per colour, shape or word)."""
    from transformers import GPT2Tokenizer, Qwen2Tokenizer

    specials = SMOLVLM_SPECIAL_TOKENS if arch == "smolvlm" else QWEN_SPECIAL_TOKENS
    added = QWEN3_ADDED_TOKENS if arch == "qwen3_vl" else []
    n_bpe = vocab_size - len(specials) - len(added)
    if n_bpe < 300:  # 256 byte symbols plus a few merges
        raise ValueError(f"vocab_size {vocab_size} is too small: need at least {300 + len(specials) + len(added)}")

    bpe = Tokenizer(models.BPE())
    if arch == "smolvlm":  # GPT-2 style: byte-level with its own regex
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:  # Qwen2Tokenizer's pipeline, so the trained merges fit the class that loads them
        bpe.normalizer = normalizers.NFC()
        bpe.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=n_bpe, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(_corpus() + list(extra_corpus), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab, merges = model["vocab"], [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]

    if arch == "smolvlm":
        tok = GPT2Tokenizer(
            vocab=vocab,
            merges=merges,
            unk_token="<|endoftext|>",
            bos_token="<|im_start|>",
            eos_token="<end_of_utterance>",
            pad_token="<|im_end|>",
            add_prefix_space=False,
        )
    else:
        tok = Qwen2Tokenizer(
            vocab=vocab,
            merges=merges,
            unk_token=None,
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
        )
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.add_tokens(added)
    if len(tok) != vocab_size:  # the trainer ran out of merges: the built-in corpus is too small for this size
        raise ValueError(f"vocab_size {vocab_size} is too large for the built-in corpus (at most {len(tok)} here)")
    return tok


# --- chat templates (the families' own, as published with their hub checkpoints) -----------------------------------

QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content"
    " or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' "
    "or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

QWEN3_VL_CHAT_TEMPLATE = """{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- macro render_content(content, do_vision_count) %}
    {%- if content is string %}
        {{- content }}
    {%- else %}
        {%- for item in content %}
            {%- if 'image' in item or 'image_url' in item or item.type == 'image' %}
                {%- if do_vision_count %}
                    {%- set image_count.value = image_count.value + 1 %}
                {%- endif %}
                {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                <|vision_start|><|image_pad|><|vision_end|>
            {%- elif 'video' in item or item.type == 'video' %}
                {%- if do_vision_count %}
                    {%- set video_count.value = video_count.value + 1 %}
                {%- endif %}
                {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                <|vision_start|><|video_pad|><|vision_end|>
            {%- elif 'text' in item %}
                {{- item.text }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
{%- endmacro %}
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- render_content(messages[0].content, false) + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + render_content(messages[0].content, false) + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- set content = render_content(message.content, True) %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == "
    "'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}"
    "{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}"
    "{{ '<video>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}"
    "{{ 'Assistant:' }}{% endif %}"
)

# --- model configs -----------------------------------------------------------------------------------------------

OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) as Qwen2.5-VL's hub config does ([16, 24, 24]
    of 64): time gets a quarter, height and width share the rest."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _text_sizes(text_hidden: int, text_heads: int, text_kv_heads: int) -> tuple[int, int]:
    if text_hidden % text_heads or text_heads % text_kv_heads:
        raise ValueError("text_hidden must divide by text_heads, and text_heads by text_kv_heads")
    head_dim = text_hidden // text_heads
    if head_dim % 2 or head_dim < 8:
        raise ValueError(f"head_dim {head_dim} must be even and at least 8 (3D rotary sections)")
    return head_dim, 4 * text_hidden


def _qwen_config(arch: Arch, tok, s: dict):
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    head_dim, intermediate = _text_sizes(s["text_hidden"], s["text_heads"], s["text_kv_heads"])
    ids = {
        name: tok.convert_tokens_to_ids(t)
        for name, t in [
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        ]
    }
    text = dict(
        vocab_size=len(tok),
        hidden_size=s["text_hidden"],
        intermediate_size=intermediate,
        num_hidden_layers=s["text_layers"],
        num_attention_heads=s["text_heads"],
        num_key_value_heads=s["text_kv_heads"],
        max_position_embeddings=s["max_positions"],
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
    )
    vision = dict(
        depth=s["vision_depth"],
        hidden_size=s["vision_hidden"],
        intermediate_size=4 * s["vision_hidden"],
        num_heads=s["vision_heads"],
        out_hidden_size=s["text_hidden"],
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    if arch == "qwen2_5_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": _mrope_section(head_dim)}
        # window_size is in pixels: 4 merged units, so windows matter even on small frames; last block full attention
        vision.update(
            patch_size=14, window_size=112, fullatt_block_indexes=[s["vision_depth"] - 1], tokens_per_second=2
        )
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    text.update(head_dim=head_dim)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 5e6,
        "mrope_section": _mrope_section(head_dim),
        "mrope_interleaved": True,
    }
    # position embeddings on a 16x16 grid (interpolated to each frame's size); deepstack taps the first block
    vision.update(patch_size=16, num_position_embeddings=256, deepstack_visual_indexes=[0])
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)


def _smolvlm_config(tok, s: dict):
    from transformers import SmolVLMConfig

    _, intermediate = _text_sizes(s["text_hidden"], s["text_heads"], s["text_kv_heads"])
    text = dict(
        model_type="llama",
        vocab_size=len(tok),
        hidden_size=s["text_hidden"],
        intermediate_size=intermediate,
        num_hidden_layers=s["text_layers"],
        num_attention_heads=s["text_heads"],
        num_key_value_heads=s["text_kv_heads"],
        max_position_embeddings=s["max_positions"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 1e5},
    )
    vision = dict(
        hidden_size=s["vision_hidden"],
        intermediate_size=4 * s["vision_hidden"],
        num_hidden_layers=s["vision_depth"],
        num_attention_heads=s["vision_heads"],
        image_size=s["smolvlm_image_size"],
        patch_size=16,
    )
    return SmolVLMConfig(
        text_config=text,
        vision_config=vision,
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=True,
    )


# --- preprocessor configs (hub layout) -----------------------------------------------------------------------------


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _write_preprocessor_configs(arch: Arch, out: Path, s: dict) -> None:
    if arch == "qwen2_5_vl":
        # Like Qwen/Qwen2.5-VL-*: one file; the video processor falls back to it (min/max_pixels per frame).
        _write_json(
            out / "preprocessor_config.json",
            {
                "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2_5_VLProcessor",
                "min_pixels": s["min_pixels"],
                "max_pixels": s["max_pixels"],
                "patch_size": 14,
                "merge_size": 2,
                "temporal_patch_size": 2,
                "image_mean": OPENAI_CLIP_MEAN,
                "image_std": OPENAI_CLIP_STD,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "do_resize": True,
                "resample": 3,
                "do_convert_rgb": True,
            },
        )
    elif arch == "qwen3_vl":
        common = {
            "processor_class": "Qwen3VLProcessor",
            "patch_size": 16,
            "merge_size": 2,
            "temporal_patch_size": 2,
            "image_mean": HALF,
            "image_std": HALF,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "do_resize": True,
            "resample": 3,
            "do_convert_rgb": True,
        }
        _write_json(
            out / "preprocessor_config.json",
            {
                **common,
                "image_processor_type": "Qwen2VLImageProcessorFast",
                "size": {"shortest_edge": s["min_pixels"], "longest_edge": s["max_pixels"]},
            },
        )
        # Qwen3-VL's video size bounds the whole clip (frames x pixels), as on the hub.
        _write_json(
            out / "video_preprocessor_config.json",
            {
                **common,
                "video_processor_type": "Qwen3VLVideoProcessor",
                "do_sample_frames": False,
                "size": {"shortest_edge": s["min_pixels"], "longest_edge": s["max_pixels"] * 768},
                "fps": 2,
                "min_frames": 4,
                "max_frames": 768,
            },
        )
    else:
        side = s["smolvlm_image_size"]
        _write_json(
            out / "preprocessor_config.json",
            {
                "image_processor_type": "SmolVLMImageProcessor",
                "processor_class": "SmolVLMProcessor",
                "do_image_splitting": False,
                "do_resize": True,
                "size": {"longest_edge": side},
                "max_image_size": {"longest_edge": side},
                "do_pad": True,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": HALF,
                "image_std": HALF,
                "resample": 1,
                "do_convert_rgb": True,
            },
        )
        # SmolVLM's processor also needs image_seq_len (tokens per image after the pixel shuffle).
        seq_len = (side // 16) ** 2 // 4
        _write_json(out / "processor_config.json", {"processor_class": "SmolVLMProcessor", "image_seq_len": seq_len})


def build_tiny_vlm(
    arch: Arch,
    out_dir: str | Path,
    *,
    text_hidden: int = 128,
    text_layers: int = 2,
    text_heads: int = 4,
    text_kv_heads: int = 2,
    vision_hidden: int = 64,
    vision_depth: int = 2,
    vision_heads: int = 2,
    vocab_size: int = 1000,
    min_pixels: int = 16 * 28 * 28,
    max_pixels: int = 128 * 32 * 32,
    smolvlm_image_size: int = 128,
    max_positions: int = 32768,
    init_std: float | None = None,
    dtype: Literal["float32", "bfloat16"] = "float32",
    seed: int = 0,
    extra_corpus: Sequence[str] = (),
) -> Path:
    """Build a randomly initialised `arch` checkpoint in out_dir (created) and return its path.

    Same arguments, same files: weights are seeded and the tokenizer is trained on a fixed corpus. Sizes: text
    hidden/layers/heads (MLP 4x hidden), vision hidden/depth/heads; Qwen families use their real patch sizes (14 for
    Qwen2.5-VL, 16 for Qwen3-VL), merge 2, temporal patch 2; SmolVLM uses patch 16, pixel shuffle 2 and square
    images of `smolvlm_image_size`. min/max_pixels bound each Qwen frame, like the hub preprocessor configs.
    init_std overrides the architecture's initializer_range (0.02): at that scale a random tiny model's next-token
    distribution is nearly flat and greedy decoding repeats one token, so tests use a larger one (e.g. 0.3).
    extra_corpus: domain text for the tokenizer (train_tokenizer)."""
    from transformers import AutoModelForImageTextToText

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    sizes = dict(
        text_hidden=text_hidden,
        text_layers=text_layers,
        text_heads=text_heads,
        text_kv_heads=text_kv_heads,
        vision_hidden=vision_hidden,
        vision_depth=vision_depth,
        vision_heads=vision_heads,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        smolvlm_image_size=smolvlm_image_size,
        max_positions=max_positions,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = train_tokenizer(arch, vocab_size, extra_corpus)
    config = _smolvlm_config(tok, sizes) if arch == "smolvlm" else _qwen_config(arch, tok, sizes)
    if init_std is not None:
        for c in (config, config.get_text_config(), config.vision_config):
            c.initializer_range = init_std
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config).to(getattr(torch, dtype))
    # like the hub generation configs: Qwen stops at <|im_end|> or <|endoftext|>, SmolVLM at <end_of_utterance>
    stops = ["<end_of_utterance>"] if arch == "smolvlm" else ["<|im_end|>", "<|endoftext|>"]
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids(t) for t in stops]
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)

    tok.save_pretrained(out)
    template = {"qwen2_5_vl": QWEN2_5_VL_CHAT_TEMPLATE, "qwen3_vl": QWEN3_VL_CHAT_TEMPLATE}.get(
        arch, SMOLVLM_CHAT_TEMPLATE
    )
    (out / "chat_template.jinja").write_text(template)
    _write_preprocessor_configs(arch, out, sizes)
    return out

from pathlib import Path

import pytest

from videomem.config import ConfigError, field_help, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.memory.max_tokens == 1024
    assert cfg.clips.max_pixels == 131072  # the paper's pixel cap


def test_flags_override_the_file_and_unset_flags_do_not(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("clips:\n  clips: 8\n  frames_per_clip: 4\n")
    cfg = load_config(f, {"clips.frames_per_clip": 2, "clips.clips": None, "model.backend": "openai"})
    assert (cfg.clips.clips, cfg.clips.frames_per_clip, cfg.model.backend) == (8, 2, "openai")


def test_json_files_and_bad_files(tmp_path):
    j = tmp_path / "c.json"
    j.write_text('{"memory": {"max_tokens": 64}}')
    assert load_config(j).memory.max_tokens == 64
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("clips: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)
    with pytest.raises(ConfigError, match="clips.fps"):
        load_config(overrides={"clips.fps": -1})
    no_rate = tmp_path / "r.yaml"
    no_rate.write_text("clips:\n  frames_per_clip: null\n")
    with pytest.raises(ConfigError, match="frames_per_clip or fps"):
        load_config(no_rate)


def test_help_comes_from_the_config_fields():
    assert "paper" in field_help("clips.max_pixels") and "L_max" in field_help("memory.max_tokens")


def test_a_model_directory_supplies_its_reading_defaults_under_file_and_flags(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "videomem.yaml").write_text("clips:\n  clip_seconds: 60\n  max_pixels: 16384\nmemory:\n  max_tokens: 256\n")
    cfg = load_config(None, {"model.model": str(model)})
    assert (cfg.clips.clip_seconds, cfg.clips.max_pixels, cfg.memory.max_tokens) == (60, 16384, 256)
    assert cfg.clips.frames_per_clip == 16  # what the model file leaves out keeps the library default
    f = tmp_path / "c.yaml"
    f.write_text(f"model:\n  model: {model}\nclips:\n  max_pixels: 4096\n")
    cfg = load_config(f, {"memory.max_tokens": 512})
    assert (cfg.clips.clip_seconds, cfg.clips.max_pixels, cfg.memory.max_tokens) == (60, 4096, 512)
    # a clip plan given as a count replaces the model's plan by duration (and a rate its frame count)
    cfg = load_config(None, {"model.model": str(model), "clips.clips": 8, "clips.fps": 0.5})
    assert (cfg.clips.clips, cfg.clips.clip_seconds, cfg.clips.fps, cfg.clips.frames_per_clip) == (8, None, 0.5, 16)
    # a served model of the same name is not a local directory: no defaults from disk
    assert load_config(None, {"model.model": str(model), "model.backend": "openai"}).clips.clip_seconds is None
    (model / "videomem.yaml").write_text("model:\n  device: cuda\n")
    with pytest.raises(ConfigError, match="may only hold the sections clips, memory"):
        load_config(None, {"model.model": str(model)})

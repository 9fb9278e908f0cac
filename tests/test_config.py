"""Config tree: presets, strict YAML, dotted overrides, validation."""

import pytest

from videosalmonn.config import ConnectorConfig, ModelConfig, ResolutionLevel, preset_names
from videosalmonn.connector.multires import MultiResolutionConnector
from videosalmonn.errors import ConfigError


def test_presets_load():
    assert {"tiny", "video-salmonn-13b"} <= set(preset_names())
    big = ModelConfig.from_name("video-salmonn-13b")
    assert big.connector.levels == (ResolutionLevel(1, 3), ResolutionLevel(10, 30))
    assert big.connector.causal == "future" and big.connector.share_qformer
    assert big.llm.lora.r == 32 and big.llm.lora.scaling == 1.0
    assert big.media.frame_sampling == "official" and big.media.beats_fp16_waveform and big.dtype == "float16"
    assert big.generation.num_beams == 5 and big.generation.repetition_penalty == 1.5
    tiny = ModelConfig.from_name("tiny")
    assert tiny.weights.llm is None and tiny.llm.width == 64


def test_overrides_are_typed_and_checked():
    cfg = ModelConfig.from_name(
        "tiny",
        [
            "connector.causal=past",
            "connector.levels=[[1,3],[10,30],[20,60]]",
            "generation.num_beams=3",
            "llm.lora=null",
        ],
    )
    assert cfg.connector.causal == "past" and cfg.connector.window_multiple == 20
    assert cfg.generation.num_beams == 3 and cfg.llm.lora is None
    with pytest.raises(ConfigError, match="unknown key 'connector.bogus'"):
        cfg.replace("connector.bogus=1")
    with pytest.raises(ConfigError, match="not one of"):
        cfg.replace("connector.causal=sideways")
    with pytest.raises(ConfigError, match="expected an integer"):
        cfg.replace("connector.depth=two")
    with pytest.raises(ConfigError, match="expected key.path=value"):
        cfg.replace("connector.depth")


def test_yaml_file_unknown_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("name: x\nconnector:\n  depth: 2\n  colour: blue\n")
    with pytest.raises(ConfigError, match=r"m.yaml: unknown key\(s\) connector.colour"):
        ModelConfig.from_name(str(path))
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ModelConfig.from_name(str(path))
    with pytest.raises(ConfigError, match="unknown preset"):
        ModelConfig.from_name("video-salmonn-70b")


def test_levels_must_emit_equal_token_counts():
    with pytest.raises(ConfigError, match="paper eq. 3"):
        ConnectorConfig(levels=(ResolutionLevel(1, 3), ResolutionLevel(10, 20)))
    assert ConnectorConfig(levels=(ResolutionLevel(2, 6), ResolutionLevel(5, 15))).window_multiple == 10
    with pytest.raises(ConfigError, match="diversity_levels"):
        ModelConfig.from_name("tiny", ["loss.diversity_levels=[5]"])


def test_exponent_without_dot_is_a_number(tmp_path):
    """PyYAML (YAML 1.1) reads `1e-3` as a string; a float field still takes it."""
    assert ModelConfig.from_name("tiny", ["loss.diversity_weight=1e-2"]).loss.diversity_weight == 0.01
    path = tmp_path / "m.yaml"
    path.write_text("loss:\n  diversity_weight: 5e-3\n")
    assert ModelConfig.from_name(str(path)).loss.diversity_weight == 0.005
    with pytest.raises(ConfigError, match="expected a number"):
        ModelConfig.from_name("tiny", ["loss.diversity_weight=lots"])


def test_cross_stage_invariants_are_checked_at_construction():
    """What one stage needs of another is a config error when the config is built, not a failure in forward."""
    with pytest.raises(ConfigError, match=r"encoders.image_qformer.num_queries 24: the 25 audio frames"):
        ModelConfig.from_name("tiny", ["encoders.image_qformer.num_queries=24"])
    assert ModelConfig.from_name("tiny", ["encoders.image_qformer.num_queries=25"]).encoders.image_qformer.num_queries
    with pytest.raises(ConfigError, match=r"connector.max_positions 319: a window of 10 frames x 32 tokens needs 320"):
        ModelConfig.from_name("tiny", ["connector.max_positions=319"])
    assert ModelConfig.from_name("tiny", ["connector.max_positions=320"]).connector.max_positions == 320
    with pytest.raises(ConfigError, match=r"encoders.whisper.max_positions 750: .* 3000 log-mel frames, 1500"):
        ModelConfig.from_name("tiny", ["encoders.whisper.max_positions=750"])
    with pytest.raises(ConfigError, match=r"encoders.whisper.n_mels 128: the media pipeline computes 80-bin"):
        ModelConfig.from_name("video-salmonn-13b", ["encoders.whisper.n_mels=128"])
    with pytest.raises(ConfigError, match="connector.max_positions 100"):  # a connector built on its own
        MultiResolutionConnector(ConnectorConfig(width=16, num_heads=4, max_positions=100), 16, 32, 12, 10, 24)
    with pytest.raises(ConfigError, match="num_queries 4"):
        MultiResolutionConnector(ConnectorConfig(width=16, num_heads=4), 16, 4, 12, 10, 24)

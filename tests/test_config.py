from __future__ import annotations

import json

import pytest

from deepfake_cli.config import Config, load_config, to_toml
from deepfake_cli.errors import ConfigError


@pytest.fixture
def toml_file(tmp_path):
    p = tmp_path / "cfg.toml"
    p.write_text("[face]\nmargin = 0.2\nmin_size = 40\n\n[train]\nepochs = 3\nbatch_size = 16\n")
    return p


@pytest.mark.parametrize(
    "use_file, env, cli, expected_margin, expected_min_size",
    [
        (False, {}, {}, None, 50),  # built-in defaults
        (True, {}, {}, 0.2, 40),  # file over defaults
        (True, {"DFDETECT_FACE_MARGIN": "0.1"}, {}, 0.1, 40),  # env over file
        (True, {"DFDETECT_FACE_MARGIN": "0.1"}, {"face.margin": 0.05}, 0.05, 40),  # CLI over env
        (False, {"DFDETECT_FACE_MIN_SIZE": "64"}, {"face.min_size": None}, None, 64),  # None = option not given
    ],
)
def test_precedence(toml_file, use_file, env, cli, expected_margin, expected_min_size):
    cfg = load_config(toml_file if use_file else None, cli, environ=env)
    assert cfg.face.margin == expected_margin
    assert cfg.face.min_size == expected_min_size


def test_yaml_file(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text("train:\n  lr: 0.001\n  augment: strong\nruntime:\n  device: cpu\n")
    cfg = load_config(p, environ={})
    assert cfg.train.lr == 0.001 and cfg.train.augment == "strong" and cfg.runtime.device == "cpu"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[face]\nmargn = 0.2\n", "face.margn"),
        ("[faces]\nmargin = 0.2\n", "faces"),
        ("[train]\nepochs = 'ten'\n", "train.epochs"),
        ("[train]\naugment = 'wild'\n", "train.augment"),
        ("[face]\ndetect = 1\n", "face.detect"),
        ("[face]\nmin_prob = 2.0\n", "face.min_prob"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p, environ={})
    assert needle in str(err.value)


def test_env_types_and_errors():
    cfg = load_config(environ={"DFDETECT_TRAIN_AMP": "false", "DFDETECT_DATA_METHODS": "Deepfakes,FaceSwap",
                               "DFDETECT_PREDICT_THRESHOLD": "none", "DFDETECT_HOME": "/x"})
    assert cfg.train.amp is False and cfg.data.methods == ["Deepfakes", "FaceSwap"] and cfg.predict.threshold is None
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(environ={"DFDETECT_TRAIN_EPOCHS": "1.5"})
    with pytest.raises(ConfigError, match="runtime.num_threads"):
        load_config(overrides={"runtime.num_threads": -2}, environ={})
    with pytest.raises(ConfigError, match="video.evry"):
        load_config(environ={"DFDETECT_VIDEO_EVRY": "3"})
    # Lists as written in a config file work too; a broken one is an error, not a literal string.
    cfg = load_config(environ={"DFDETECT_DATA_METHODS": '["Deepfakes", "FaceSwap"]'})
    assert cfg.data.methods == ["Deepfakes", "FaceSwap"]
    with pytest.raises(ConfigError, match="not a valid list"):
        load_config(environ={"DFDETECT_DATA_METHODS": '["Deepfakes", '})
    with pytest.raises(ConfigError, match="must be finite|finite number"):
        load_config(environ={"DFDETECT_VIDEO_END": "inf"})


def test_toml_dump_round_trips(tmp_path):
    cfg = load_config(overrides={"face.margin": 0.25, "train.epochs": 2}, environ={})
    p = tmp_path / "resolved.toml"
    p.write_text(to_toml(cfg))
    again = load_config(p, environ={})
    assert again == cfg
    assert json.loads(json.dumps(again.to_dict())) == cfg.to_dict()


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/cfg.toml", environ={})


def test_replace_returns_copy():
    base = Config()
    new = base.replace({"face.min_size": 10})
    assert new.face.min_size == 10 and base.face.min_size == 50

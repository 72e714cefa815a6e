from __future__ import annotations

import json

import pytest

from conftest import make_checkpoint
from deepfake_cli.models import store as model_store
from deepfake_cli.errors import ModelNotAvailableError, UnknownModelError
from deepfake_cli.models.store import resolve_model


@pytest.fixture
def only_user_dir(tmp_path, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setattr(model_store, "model_dirs", lambda: [user])
    monkeypatch.delenv("DFDETECT_DEFAULT_MODEL", raising=False)
    return user


def test_no_default_model_is_a_clear_error(only_user_dir):
    with pytest.raises(ModelNotAvailableError, match="no default model"):
        resolve_model(None)


def test_names_paths_and_default(only_user_dir):
    make_checkpoint(only_user_dir / "mine.pt")
    assert resolve_model("mine") == only_user_dir / "mine.pt"
    assert resolve_model(str(only_user_dir / "mine.pt")) == only_user_dir / "mine.pt"
    (only_user_dir / "default.json").write_text(json.dumps({"name": "mine"}))
    assert resolve_model(None) == only_user_dir / "mine.pt"
    with pytest.raises(ModelNotAvailableError, match="architecture, not a trained model"):
        resolve_model("sepcnn")
    with pytest.raises(UnknownModelError, match="mine"):
        resolve_model("nonexistent_model")

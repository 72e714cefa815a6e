"""Finding trained models: a checkpoint path, or the name of a shipped model.

Shipped models are ``<name>.pt`` files with a ``<name>.md`` model card, looked
for in the user's models folder (``$DFDETECT_MODELS_DIR`` if set, else
``$XDG_CACHE_HOME/dfdetect/models`` or ``~/.cache/dfdetect/models``: where
``dfdetect models import`` writes) and then in the models folder that ships
with the package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from deepfake_cli.errors import ModelNotAvailableError, UnknownModelError
from deepfake_cli.models import is_model, list_models

DEFAULT_MODEL_FILE = "default.json"


def user_models_dir() -> Path:
    """The user's own models (imported or kept): ``$DFDETECT_MODELS_DIR``, else the user cache."""
    env = os.environ.get("DFDETECT_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache) if cache else Path.home() / ".cache") / "dfdetect" / "models"


def model_dirs() -> list[Path]:
    """Folders searched for models by name, first match wins: the user's, then the shipped ones."""
    return [d for d in [user_models_dir(), *_packaged_dirs()] if d.is_dir()]


def _packaged_dirs() -> list[Path]:
    package = Path(__file__).resolve().parents[1]
    # Installed wheel: package data. Source checkout (editable install): the repo's
    # models/, recognised by the pyproject.toml beside it (site-packages may hold an
    # unrelated top-level "models" folder).
    dirs = [package / "shipped_models"]
    if (package.parent / "pyproject.toml").is_file():
        dirs.append(package.parent / "models")
    return dirs


def is_packaged_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a model shipped with dfdetect (which commands must never rewrite)."""
    resolved = Path(path).resolve()
    return any(resolved.parent == d.resolve() for d in _packaged_dirs())


@dataclass(frozen=True)
class StoredModel:
    name: str
    path: Path
    card: Path | None


def shipped_models() -> list[StoredModel]:
    found: dict[str, StoredModel] = {}
    for directory in model_dirs():
        for pt in sorted(directory.glob("*.pt")):
            card = pt.with_suffix(".md")
            found.setdefault(pt.stem, StoredModel(pt.stem, pt, card if card.is_file() else None))
    return list(found.values())


def default_model_name() -> str | None:
    """The name recorded in ``default.json`` of the first models folder that has one."""
    env = os.environ.get("DFDETECT_DEFAULT_MODEL")
    if env:
        return env
    for directory in model_dirs():
        marker = directory / DEFAULT_MODEL_FILE
        if marker.is_file():
            try:
                return str(json.loads(marker.read_text(encoding="utf-8"))["name"])
            except (ValueError, KeyError):
                continue
    return None


def resolve_model(spec: str | os.PathLike[str] | None) -> Path:
    """Turn ``--model PATH_OR_NAME`` (or nothing, for the default) into a checkpoint path."""
    if spec is None or str(spec) == "":
        name = default_model_name()
        if name is None:
            raise ModelNotAvailableError(
                "no model given and no default model is installed: pass --model PATH.pt "
                "(a checkpoint from 'dfdetect train' or 'dfdetect models import')"
            )
        spec = name
    path = Path(spec).expanduser()
    # Names of shipped or imported models are bare words; anything with a folder or an
    # extension (model.pt, exports/best.onnx) is a file.
    looks_like_file = bool(path.suffix) or "/" in str(spec) or os.sep in str(spec)
    if looks_like_file or path.exists():
        if not path.is_file():
            raise ModelNotAvailableError(f"model file not found: {path}")
        return path
    for stored in shipped_models():
        if stored.name == str(spec):
            return stored.path
    names = [m.name for m in shipped_models()]
    if is_model(str(spec)):
        raise ModelNotAvailableError(
            f"'{spec}' is an architecture, not a trained model; pass a checkpoint "
            f"(train one with 'dfdetect train --arch {spec}')"
            + (f" or a model by name: {', '.join(names)}" if names else "")
        )
    raise UnknownModelError(
        f"no model named '{spec}': not a file, nor a shipped or imported model"
        + (f" (models: {', '.join(names)})" if names else "")
        + f"; architectures: {', '.join(list_models())}"
    )

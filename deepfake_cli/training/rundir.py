"""Auto-numbered run folders, like ultralytics: ``runs/train/exp``, ``exp2``, ``exp3``..."""

from __future__ import annotations

import os
from pathlib import Path


def next_run_dir(project: str | os.PathLike[str], name: str = "exp", exist_ok: bool = False) -> Path:
    """Create and return ``project/name``, or ``name2``, ``name3``... if taken.

    The folder is made with ``mkdir(exist_ok=False)``, so two runs started at
    the same moment never share one.
    """
    project = Path(project)
    project.mkdir(parents=True, exist_ok=True)
    if exist_ok:
        path = project / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    n = 1
    while True:
        path = project / (name if n == 1 else f"{name}{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1

"""A trained detector rebuilt from its checkpoint alone, scoring face crops in batches."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from deepfake_cli.models.checkpoint import RUN_CHECKPOINT_STEMS, checkpoint_label, load_checkpoint  # noqa: F401 (re-exported)
from deepfake_cli.faces.framing import RESIZE_INTERPOLATION, FaceFraming
from deepfake_cli.labels import real_index
from deepfake_cli.models import build_from_checkpoint
from deepfake_cli.models.preprocessing import crops_to_batch, norm_tensors, normalize
from deepfake_cli.config import DEFAULT_BORDERLINE_BAND
from deepfake_cli.inference.verdict import borderline, margin, verdict


@dataclass
class Score:
    """The classification of one face crop: its verdict (``label``) and how close it came to
    the threshold (``margin`` = p_fake - threshold, ``borderline``; inference/verdict.py)."""

    p_fake: float
    label: str
    method: str | None
    probs: dict[str, float]
    margin: float | None = None
    borderline: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_fake": round(self.p_fake, 6),
            "label": self.label,
            "margin": self.margin,
            "borderline": self.borderline,
            "method": self.method,
            "probs": {k: round(v, 6) for k, v in self.probs.items()},
        }


class FaceClassifier:
    """Preprocessing + model + labels + threshold, as stored in a checkpoint."""

    def __init__(
        self,
        model: nn.Module,
        *,
        arch: str,
        labels: Sequence[str],
        preprocessing: dict[str, Any],
        threshold: float = 0.5,
        device: str | torch.device = "cpu",
        name: str | None = None,
        checkpoint: dict[str, Any] | None = None,
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.arch = arch
        self.labels = list(labels)
        # Older checkpoints said "bilinear": crops were always resized as faces.resize_square does.
        self.preprocessing = {**preprocessing, "interpolation": RESIZE_INTERPOLATION}
        self.threshold = float(threshold)
        # Verdicts closer than this to the threshold are borderline (predict.borderline_band).
        self.borderline_band = DEFAULT_BORDERLINE_BAND
        self.name = name or arch
        self.checkpoint_meta = {k: v for k, v in (checkpoint or {}).items() if k != "state_dict"}
        self.input_size = int(self.preprocessing["input_size"])
        self.real_index = real_index(self.labels)
        self.framing = FaceFraming.from_dict(self.preprocessing.get("face"))
        self._mean, self._std = norm_tensors(self.preprocessing, self.device)
        # Test-time views averaged per crop, as the checkpoint's threshold was chosen with them.
        self.tta = str(self.preprocessing.get("tta", "none"))
        # What the checkpoint's threshold was chosen with; a threshold set by hand is the user's own.
        self.calibrated_views = self.tta
        self.threshold_from_checkpoint = True
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls, source: str | os.PathLike[str] | dict[str, Any], device: str | torch.device = "cpu", name: str | None = None
    ) -> "FaceClassifier":
        ckpt = source if isinstance(source, dict) else load_checkpoint(source)
        label = name or (checkpoint_label(source) if not isinstance(source, dict) else ckpt["arch"])
        model = build_from_checkpoint(ckpt, label)
        return cls(
            model,
            arch=ckpt["arch"],
            labels=ckpt["labels"],
            preprocessing=ckpt["preprocessing"],
            threshold=ckpt.get("threshold", 0.5),
            device=device,
            name=label,
            checkpoint=ckpt,
        )

    def configure(self, predict: Any) -> "FaceClassifier":
        """Apply a :class:`~deepfake_cli.config.PredictConfig`: a configured threshold overrides
        the checkpoint's calibrated one, the borderline band replaces the default, and a
        ``tta`` other than ``auto`` replaces the checkpoint's test-time views."""
        if predict.threshold is not None:
            self.threshold = float(predict.threshold)
            self.threshold_from_checkpoint = False
        if predict.borderline_band is not None:
            self.borderline_band = predict.borderline_band
        return self.use_views(predict.tta)

    def use_views(self, tta: str) -> "FaceClassifier":
        """Score with these test-time views (``none``, ``flip``); ``auto`` keeps the checkpoint's."""
        if tta != "auto":
            self.tta = tta
        return self

    def calibration_note(self) -> str | None:
        """Why the decision threshold may not fit the scores, or None: the checkpoint's threshold
        was chosen on scores of other test-time views than the ones configured."""
        if not self.threshold_from_checkpoint or self.tta == self.calibrated_views:
            return None
        return (
            f"threshold {self.threshold:.3f} was calibrated with test-time views '{self.calibrated_views}', "
            f"scores now use '{self.tta}': verdicts near it may shift (set --threshold, or calibrate a copy "
            f"with 'dfdetect evaluate --tta {self.tta} --threshold-from val')"
        )

    @property
    def model_lock(self) -> threading.Lock:
        """Held around every use of ``model``: forward hooks (Grad-CAM) must not see another thread's batch."""
        return self._lock

    @property
    def is_multiclass(self) -> bool:
        return len(self.labels) > 2

    def to_tensor(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 crops of any size -> normalised float batch on the device."""
        return normalize(crops_to_batch(crops, self.input_size).to(self.device), self._mean, self._std)

    @torch.inference_mode()
    def predict_proba(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Softmax probabilities, shape (N, num_classes)."""
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        out = []
        for start in range(0, len(crops), batch_size):
            x = self.to_tensor(crops[start : start + batch_size])
            n = len(x)
            if self.tta == "flip":
                x = torch.cat([x, x.flip(3)])  # each crop and its mirror image, in one batch
            with self._lock:
                logits = self.model(x)
            probs = torch.softmax(logits.float(), dim=1)
            if self.tta == "flip":
                probs = (probs[:n] + probs[n:]) / 2
            out.append(probs.cpu().numpy())
        return np.concatenate(out)

    def p_fake(self, probs: np.ndarray) -> np.ndarray:
        return 1.0 - probs[:, self.real_index]

    def score_rows(self, probs: np.ndarray) -> list[Score]:
        scores = []
        for row in probs:
            p_fake = float(1.0 - row[self.real_index])
            method = None
            if self.is_multiclass:
                fake_only = [(p, i) for i, p in enumerate(row) if i != self.real_index]
                method = self.labels[max(fake_only)[1]]
            scores.append(
                Score(
                    p_fake=p_fake,
                    label=verdict(p_fake, self.threshold),
                    method=method,
                    probs=self._probs(row, p_fake),
                    margin=margin(p_fake, self.threshold),
                    borderline=borderline(p_fake, self.threshold, self.borderline_band),
                )
            )
        return scores

    def _probs(self, row: np.ndarray, p_fake: float) -> dict[str, float]:
        probs = {name: float(p) for name, p in zip(self.labels, row)}
        if len(self.labels) == 2:
            # softmax's fake and 1 - real differ in float32's last bits, enough to print
            # p_fake 0.018844 beside probs.fake 0.018845: report one number.
            probs[self.labels[1 - self.real_index]] = p_fake
        return probs

    def score(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> list[Score]:
        return self.score_rows(self.predict_proba(crops, batch_size))

    def describe(self) -> dict[str, Any]:
        meta = self.checkpoint_meta
        return {
            "name": self.name,
            "arch": self.arch,
            "labels": self.labels,
            "input_size": self.input_size,
            "threshold": self.threshold,
            "tta": self.tta,
            "face_framing": self.framing.to_dict(),
            "metrics": meta.get("metrics", {}),
            "provenance": meta.get("provenance", {}),
        }

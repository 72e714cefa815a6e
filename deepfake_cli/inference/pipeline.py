"""Detect, crop and classify: the one face pipeline behind predict, video, gradcam and serve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from deepfake_cli.inference.classifier import FaceClassifier, Score
from deepfake_cli.config import Config
from deepfake_cli.faces.detector import Face, FaceDetector, whole_image_face
from deepfake_cli.faces.framing import FaceFraming, crop_face


@dataclass
class FaceResult:
    """One face: where it is, how sure the detector was, and its score."""

    face: Face
    score: Score
    crop: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.face.to_dict(), **self.score.to_dict()}


class FacePipeline:
    """Face detection (or the whole image as one face) + framing + batched classification."""

    def __init__(
        self,
        classifier: FaceClassifier,
        detector: FaceDetector | None,
        framing: FaceFraming | None = None,
        batch_size: int = 32,
    ):
        self.classifier = classifier
        self.detector = detector
        self.framing = framing or classifier.framing
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, classifier: FaceClassifier, cfg: Config, max_side: int | None = None) -> "FacePipeline":
        """Use the model's training framing unless the config overrides it."""
        fc = cfg.face
        framing = FaceFraming(
            margin=classifier.framing.margin if fc.margin is None else fc.margin,
            square=classifier.framing.square if fc.square is None else fc.square,
        )
        detector = None
        if fc.detect:
            detector = FaceDetector(
                device=classifier.device,
                min_prob=fc.min_prob,
                min_size=fc.min_size,
                max_side=fc.detect_max_side if max_side is None else max_side,
                select=fc.select,
            )
        classifier.configure(cfg.predict)
        return cls(classifier, detector, framing, cfg.predict.batch_size)

    def find_faces(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        if self.detector is None:
            return [[whole_image_face(img)] for img in images]
        return self.detector.detect(images)

    def crops(self, image: np.ndarray, faces: Sequence[Face]) -> list[np.ndarray]:
        if self.detector is None:
            return [image]
        return [crop_face(image, f.box, self.framing) for f in faces]

    def classify_faces(
        self, images: Sequence[np.ndarray], faces: Sequence[Sequence[Face]], keep_crops: bool = False
    ) -> list[list[FaceResult]]:
        """Score already-detected faces of several images in shared batches."""
        flat_crops: list[np.ndarray] = []
        owners: list[tuple[int, Face]] = []
        for i, (img, img_faces) in enumerate(zip(images, faces)):
            for face, crop in zip(img_faces, self.crops(img, img_faces)):
                flat_crops.append(crop)
                owners.append((i, face))
        scores = self.classifier.score(flat_crops, self.batch_size)
        results: list[list[FaceResult]] = [[] for _ in images]
        for (i, face), crop, score in zip(owners, flat_crops, scores):
            results[i].append(FaceResult(face, score, crop if keep_crops else None))
        return results

    def analyze(self, images: Sequence[np.ndarray], keep_crops: bool = False) -> list[list[FaceResult]]:
        """All faces of each image with their scores."""
        return self.classify_faces(images, self.find_faces(images), keep_crops)

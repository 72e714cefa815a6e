"""Label sets: binary real/fake and the 7-class FaceForensics++ methods."""

from __future__ import annotations

BINARY_LABELS: tuple[str, ...] = ("real", "fake")
MULTICLASS_LABELS: tuple[str, ...] = (
    "original",
    "DeepFakeDetection",
    "Deepfakes",
    "Face2Face",
    "FaceShifter",
    "FaceSwap",
    "NeuralTextures",
)
FAKE_METHODS: tuple[str, ...] = MULTICLASS_LABELS[1:]
# Folder names that mean "real" in the datasets we read.
REAL_NAMES: frozenset[str] = frozenset({"real", "original", "youtube", "actors", "pristine"})


def default_labels(num_classes: int) -> tuple[str, ...]:
    if num_classes == 2:
        return BINARY_LABELS
    if num_classes == len(MULTICLASS_LABELS):
        return MULTICLASS_LABELS
    return tuple(f"class_{i}" for i in range(num_classes))


def real_index(labels: tuple[str, ...] | list[str]) -> int:
    """Index of the class that means "not manipulated"."""
    for i, name in enumerate(labels):
        if name.lower() in REAL_NAMES:
            return i
    return 0


def is_real_name(name: str) -> bool:
    return name.lower() in REAL_NAMES


def canonical_method(name: str) -> str:
    """Map a folder name to a canonical method name ('original' for reals)."""
    if is_real_name(name):
        return "original"
    for method in FAKE_METHODS:
        if method.lower() == name.lower():
            return method
    return name

"""Degraded copies of a validation split, for the model cards' "Degraded copies" table.

A stand-in for heavily compressed (c40-like) and small faces, which the shared data lacks:
every crop of the val split that `dfdetect train` carves (same data, fraction, seed and
look-alike grouping) is written twice under OUT, keeping each dataset's class folders:

  OUT/jpeg30/<dataset>/<class>/<name>   re-compressed at JPEG quality 30
  OUT/half50/<dataset>/<class>/<name>   halved (area), enlarged back (bilinear), JPEG 50

Score a model on them with `dfdetect evaluate -m MODEL --data OUT/jpeg30/<dataset> --split all`.
The copies are deterministic: the same data gives the same files on any machine.

    python scripts/degraded_copies.py --data ../shared/data/ffpp_faces/train \
        --data ../shared/data/dfdc_faces --out degraded
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from deepfake_cli.config import DataConfig
from deepfake_cli.data.datasets import load_splits
from deepfake_cli.errors import DfdetectError


def degraded_versions(image):
    """(folder name, image, JPEG quality) of each degraded copy of one BGR crop."""
    h, w = image.shape[:2]
    halved = cv2.resize(image, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    enlarged = cv2.resize(halved, (w, h), interpolation=cv2.INTER_LINEAR)
    return (("jpeg30", image, 30), ("half50", enlarged, 50))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True, help="dataset root, as given to dfdetect train (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the copies")
    # The split dfdetect train carves unless told otherwise.
    defaults = DataConfig()
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    parser.add_argument("--split-seed", type=int, default=defaults.split_seed)
    parser.add_argument("--no-group-lookalikes", dest="group_lookalikes", action="store_false")
    args = parser.parse_args(argv)

    try:
        val = load_splits(args.data, val_fraction=args.val_fraction, split_seed=args.split_seed,
                          group_lookalikes=args.group_lookalikes)["val"]
    except DfdetectError as exc:
        parser.error(str(exc))
    if not len(val):
        parser.error("the data has no validation crops to copy (--val-fraction 0, or too few groups)")
    for path, dataset in zip(val.frame["path"], val.frame["dataset"]):
        crop = Path(path)
        image = cv2.imread(str(crop))
        if image is None:
            raise SystemExit(f"cannot read {crop}")
        for kind, degraded, quality in degraded_versions(image):
            out = args.out / kind / dataset / crop.parent.name / crop.with_suffix(".jpg").name
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), degraded, [cv2.IMWRITE_JPEG_QUALITY, quality])
    print(f"{len(val)} crops, two copies each, under {args.out}: {val.dataset_counts()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

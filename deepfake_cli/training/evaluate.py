"""``dfdetect evaluate``: a complete, honest report of a checkpoint on labelled face crops.

Crops are scored exactly as ``predict --no-detect`` scores them
(:meth:`FaceClassifier.predict_proba`). The report has frame-level accuracy,
per-class precision/recall/F1 with macro and weighted averages, the confusion
matrix, ROC-AUC from the probabilities, average precision, the EER with its
threshold, the threshold of maximal Youden's J and the loss; per-method AUC
against the reals; video-level AUC/accuracy (mean and "confident strategy"
aggregation) when crops carry video ids; the 7x7 matrix for multiclass models.

Which split is evaluated (``auto``): ``test`` when the data has one; else the
validation split when the model was trained on this very data (the carve-out
is re-made with the seed and fraction the checkpoint recorded, so no training
crop is scored); else every crop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from deepfake_cli.models.checkpoint import load_checkpoint, save_checkpoint
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.config import DEFAULT_BORDERLINE_BAND, save_resolved_config
from deepfake_cli.data.datasets import (
    DatasetSplits, SplitData, as_roots, balanced_per_dataset, crop_digests, data_fingerprint, load_crops, load_splits,
    read_face_table,
)
from deepfake_cli.errors import DatasetError, UsageError
from deepfake_cli.faces.framing import FaceFraming
from deepfake_cli.models.store import is_packaged_model
from deepfake_cli.output import ensure_output_dir
from deepfake_cli.training.metrics import (
    MIN_CALIBRATION_CROPS,
    binary_metrics,
    choose_threshold,
    class_report,
    cross_entropy,
    per_method,
    video_metrics,
    video_scores,
)
from deepfake_cli.inference.verdict import borderline, margin, verdict

EVAL_SPLITS: tuple[str, ...] = ("auto", "all", "train", "val", "test")
THRESHOLD_SOURCES: tuple[str, ...] = ("checkpoint", "val")
SCORE_CHUNK = 256


@dataclass
class EvalData:
    """The data to score and where its split came from."""

    splits: DatasetSplits
    split: str
    reason: str
    limit_per_class: int | None = None  # a balanced subset of the scored split (quick checks)
    # Digests of the model's training crops (from its checkpoint) found in the data, left out of every split.
    training: np.ndarray | None = None
    # Each crop's digest, read once however many times splits are asked for.
    _digests: dict[str, int] = field(default_factory=dict, repr=False)
    # What the user should know about how the data was split (printed as notes).
    notes: list[str] = field(default_factory=list)

    def digests(self, paths: Sequence[str]) -> np.ndarray:
        missing = [p for p in paths if p not in self._digests]
        self._digests.update(zip(missing, crop_digests(missing).tolist()))
        return np.array([self._digests[p] for p in paths], dtype=np.int64)

    def rows(self, name: str | None = None) -> SplitData:
        name = name or self.split
        if name == "all":
            parts = [s for s in self.splits.splits.values() if len(s)]
            if not parts:
                raise DatasetError("the data holds no crops")
            split = SplitData("all", pd.concat([p.frame for p in parts], ignore_index=True), np.concatenate([p.targets for p in parts]))
        else:
            split = self.splits.get(name)
            if split is None:
                raise DatasetError(f"{self.splits.table.root}: no crops in the {name} split")
        if self.training is not None and len(self.training):
            unseen = ~np.isin(self.digests(split.paths), self.training)
            if not unseen.any():
                raise DatasetError(f"{self.splits.table.root}: every crop of the {name} split was used to train this model")
            split = SplitData(split.name, split.frame[unseen].reset_index(drop=True), split.targets[unseen])
        if self.limit_per_class:
            keep = balanced_per_dataset(split.frame, split.targets, self.limit_per_class, self.splits.settings["split_seed"])
            split = SplitData(split.name, split.frame.iloc[keep].reset_index(drop=True), split.targets[keep])
        return split


def resolve_eval_data(classifier: FaceClassifier, root: str | os.PathLike[str], cfg, split: str = "auto") -> EvalData:
    """Read ``root`` with the model's labels, pick the split to evaluate, and keep the model's
    training crops out of it.

    Training crops are known by content (the checkpoint's ``train_crop_digests``), so a
    subset of the training data copied or linked elsewhere is not scored as unseen data.
    An explicitly requested split (``--split train``/``all``/...) is scored whole, with
    its overlap said in the reason.
    """
    data = _pick_split(classifier, root, cfg, split)
    digests = classifier.checkpoint_meta.get("train_crop_digests")
    if digests is None:
        return data
    trained = np.asarray(digests, dtype=np.int64)
    scored = data.rows()
    seen = int(np.isin(data.digests(scored.paths), trained).sum())
    if not seen:
        return data
    if split == "auto":
        data.training = trained
        data.reason = (f"no test split, and not the model's training set, though {seen} of its {len(scored)} crops "
                       f"were used to train it: every other crop")
    else:
        data.reason += f"; {seen} of its {len(scored)} crops were used to train this model: figures are optimistic"
    return data


def _framing_mismatch(recorded: dict[str, Any] | None, classifier: FaceClassifier) -> str | None:
    """Why scores may mislead when the crops were cut otherwise than the model's training crops."""
    if not recorded:
        return None  # image folders do not say how they were cropped
    crops, model = FaceFraming.from_dict(recorded), classifier.framing
    if abs(crops.margin - model.margin) < 1e-6 and crops.square == model.square:
        return None
    return (f"these crops were cut with margin {crops.margin:g}, square {crops.square}; the model was trained on "
            f"margin {model.margin:g}, square {model.square}: it scores faces framed otherwise than it learnt")


def _pick_split(classifier: FaceClassifier, root: str | os.PathLike[str], cfg, split: str) -> EvalData:
    if split not in EVAL_SPLITS:
        raise UsageError(f"--split must be one of {', '.join(EVAL_SPLITS)}")
    meta = classifier.checkpoint_meta
    provenance = meta.get("provenance") or {}
    trained_on, fingerprint = provenance.get("data"), provenance.get("fingerprint")
    # A model trained on several datasets knows each one's folder: any of them, alone or together,
    # is data it was trained on, and each re-makes its own carve-out.
    trained_folders = {Path(p) for p in (provenance.get("datasets") or {}).values()} or (
        {Path(trained_on)} if trained_on is not None else set()
    )
    folders = set()
    for one in as_roots(root):
        given = Path(one).expanduser().resolve()
        folders.add(given.parent if given.is_file() else given)  # a metadata.csv stands for its folder
    same_path = bool(trained_folders) and folders <= trained_folders
    same_data = same_path or (trained_on is not None and _same_crops(fingerprint, root))
    dc = cfg.data
    val_fraction, split_seed, lookalikes = dc.val_fraction, dc.split_seed, dc.group_lookalikes
    notes = []
    if same_data:
        # Re-make the training run's carve-out, so 'val' holds no training crop.
        recorded = (meta.get("config") or {}).get("data") or {}
        val_fraction = recorded.get("val_fraction", val_fraction)
        split_seed = recorded.get("split_seed", split_seed)
        # Checkpoints from before look-alike grouping carved val crop by crop.
        lookalikes = bool(recorded.get("group_lookalikes", False))
        if (val_fraction, split_seed) != (dc.val_fraction, dc.split_seed):
            notes.append(
                f"the model was trained on this data: its own carve-out (val fraction {val_fraction:g}, seed "
                f"{split_seed}) is kept so that 'val' holds no training crop; val fraction {dc.val_fraction:g}, "
                f"seed {dc.split_seed} are not used"
            )
    elif split not in ("train", "val"):
        # Data the model never saw, scored by its test split or whole: how val would be carved
        # does not change what is scored, so the look-alike search (seconds per 10k crops) is skipped.
        lookalikes = False
    splits = load_splits(
        root, labels=classifier.labels, val_fraction=val_fraction, split_seed=split_seed,
        group_lookalikes=lookalikes, methods=dc.methods, compression=dc.compression,
    )  # fmt: skip
    limit = dc.limit_per_class
    if split != "auto":
        return EvalData(splits, split, "requested", limit, notes=notes)
    if splits.get("test") is not None:
        return EvalData(splits, "test", "the data's test split", limit, notes=notes)
    if same_data and splits.get("val") is not None:
        reason = "no test split; the model's validation split (it was trained on this data)"
        if same_path and fingerprint and splits.fingerprint != fingerprint:
            reason += "; the crops there changed since training, so this split may hold some of its training crops"
        return EvalData(splits, "val", reason, limit, notes=notes)
    if same_data:
        raise DatasetError(
            f"{root}: the model was trained on this data and there is neither a test nor a validation split "
            "to evaluate honestly; pass --split all to score every crop anyway"
        )
    return EvalData(splits, "all", "no test split and the model was not trained on this data: every crop", limit, notes=notes)


def _same_crops(fingerprint: str | None, root) -> bool:
    """Whether the crops under ``root`` are the ones a checkpoint's fingerprint names (a moved or copied dataset)."""
    if not fingerprint:
        return False
    return data_fingerprint(read_face_table(root, val_fraction=0.0)) == fingerprint


def score_split(
    classifier: FaceClassifier,
    split: SplitData,
    batch_size: int = 64,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Class probabilities (N, K) of every crop of ``split``, as predict scores them."""
    paths = split.paths
    out = []
    for start in range(0, len(paths), SCORE_CHUNK):
        crops = load_crops(paths[start : start + SCORE_CHUNK], classifier.input_size, threads)
        out.append(classifier.predict_proba(list(crops), batch_size))
        if progress is not None:
            progress(len(crops))
    return np.concatenate(out) if out else np.zeros((0, len(classifier.labels)), np.float32)


def build_report(
    frame: pd.DataFrame,
    targets: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    threshold: float,
) -> dict[str, Any]:
    """Every number of the report from a table of crops (``label``, ``method``,
    ``video_key``) with their targets in ``labels`` and the model's probabilities."""
    from deepfake_cli.labels import real_index

    labels = list(labels)
    real = real_index(labels)
    y_fake = (frame["label"].to_numpy() == "fake").astype(np.int64)
    p_fake = 1.0 - probs[:, real]
    binary = binary_metrics(y_fake, p_fake, threshold)
    known = targets >= 0
    report: dict[str, Any] = {
        "threshold": float(threshold),
        "frame": {
            **binary,
            "loss": cross_entropy(targets[known], probs[known]),
            "classes": class_report(y_fake, (p_fake >= threshold).astype(np.int64), ["real", "fake"]),
        },
        "per_method": per_method(frame["method"].to_numpy(), y_fake, p_fake, threshold),
        "multiclass": None,
        "video": None,
    }
    if len(labels) > 2:
        report["multiclass"] = {
            "crops": int(known.sum()),
            **class_report(targets[known], probs[known].argmax(1), labels),
        }
    keys = frame["video_key"].to_numpy() if "video_key" in frame.columns else np.array([""] * len(frame))
    report["video"] = video_metrics(video_scores(keys, y_fake, p_fake), threshold)
    report["per_dataset"] = per_dataset(frame, y_fake, p_fake, threshold)
    return report


def per_dataset(frame: pd.DataFrame, y_fake: np.ndarray, p_fake: np.ndarray, threshold: float) -> list[dict[str, Any]] | None:
    """Each dataset's own figures when several were scored together (None for one)."""
    if "dataset" not in frame.columns:
        return None
    names = list(dict.fromkeys(frame["dataset"].tolist()))
    if len(names) < 2:
        return None
    datasets = frame["dataset"].to_numpy()
    methods = frame["method"].to_numpy()
    rows = []
    for name in names:
        mine = datasets == name
        m = binary_metrics(y_fake[mine], p_fake[mine], threshold)
        rows.append({
            "dataset": name,
            **{k: m[k] for k in ("n", "reals", "fakes", "auc", "average_precision", "eer", "accuracy", "balanced_accuracy")},
            "per_method": per_method(methods[mine], y_fake[mine], p_fake[mine], threshold),
        })  # fmt: skip
    return rows


def roc_curves(frame: pd.DataFrame, probs: np.ndarray, labels: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray, float | None]]:
    """The overall ROC and one per manipulation method (against all reals)."""
    from sklearn.metrics import roc_curve

    from deepfake_cli.labels import real_index
    from deepfake_cli.training.metrics import roc_auc

    y = (frame["label"].to_numpy() == "fake").astype(np.int64)
    p = 1.0 - probs[:, real_index(list(labels))]
    curves = []
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        curves.append(("all fakes", fpr, tpr, roc_auc(y, p)))
        methods = frame["method"].to_numpy()
        for method in sorted(set(methods[y == 1].tolist())):
            mask = (y == 0) | (methods == method)
            fpr, tpr, _ = roc_curve(y[mask], p[mask])
            curves.append((str(method), fpr, tpr, roc_auc(y[mask], p[mask])))
    return curves


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str], frame: pd.DataFrame, probs: np.ndarray, labels: Sequence[str]) -> dict[str, str]:
    """report.json, report.md, predictions.csv, confusion CSV/PNG, roc.png (and videos.csv)."""
    from deepfake_cli.labels import real_index
    from deepfake_cli.output import dumps
    from deepfake_cli.training.plots import plot_confusion, plot_roc

    out = ensure_output_dir(out_dir)
    files: dict[str, str] = {}
    labels = list(labels)
    threshold = report["threshold"]

    # Full precision (float64 written round-trip): the report's numbers must be reproducible from
    # this file, and near-constant scores (quick runs) differ only past the 6th decimal.
    p_fake = 1.0 - probs[:, real_index(labels)]  # as build_report computes it, so "predicted" agrees
    preds = frame[[c for c in ("path", "label", "method", "split", "video_key") if c in frame.columns]].copy()
    preds["p_fake"] = p_fake.astype(np.float64)
    preds["predicted"] = verdict(p_fake, threshold)
    # How far each crop's score is from the threshold, and whether that is within the band.
    preds["margin"] = margin(p_fake, threshold)
    preds["borderline"] = borderline(p_fake, threshold, report.get("borderline_band", DEFAULT_BORDERLINE_BAND))
    for i, name in enumerate(labels):
        # Binary models: "p_fake" is the score above (1 - p_real), not the softmax's own
        # fake output, which can differ from it in the last bit and flip a tie at the threshold.
        if f"p_{name}" not in preds:
            preds[f"p_{name}"] = probs[:, i].astype(np.float64)
    preds.to_csv(out / "predictions.csv", index=False)
    files["predictions"] = str(out / "predictions.csv")

    cm = report["frame"]["classes"]["confusion"]
    pd.DataFrame(cm, index=[f"true_{l}" for l in ("real", "fake")], columns=[f"pred_{l}" for l in ("real", "fake")]).to_csv(out / "confusion.csv")
    files["confusion_csv"] = str(out / "confusion.csv")
    files["confusion_png"] = str(plot_confusion(cm, ["real", "fake"], out / "confusion.png", f"Real vs fake at threshold {threshold:.3f}"))
    if report["multiclass"] is not None:
        mc = report["multiclass"]["confusion"]
        pd.DataFrame(mc, index=[f"true_{l}" for l in labels], columns=[f"pred_{l}" for l in labels]).to_csv(out / "confusion_multiclass.csv")
        files["confusion_multiclass_csv"] = str(out / "confusion_multiclass.csv")
        files["confusion_multiclass_png"] = str(plot_confusion(mc, labels, out / "confusion_multiclass.png", "Method confusion (argmax)"))
    curves = roc_curves(frame, probs, labels)
    if curves:
        eer = report["frame"]["eer"]
        files["roc_png"] = str(plot_roc(curves, out / "roc.png", None if eer is None else (eer, 1.0 - eer)))
    if "video_key" in frame.columns:
        videos = video_scores(frame["video_key"].to_numpy(), (frame["label"].to_numpy() == "fake").astype(np.int64), p_fake)
    else:
        videos = []
    if videos:
        pd.DataFrame(videos).to_csv(out / "videos.csv", index=False)
        files["videos_csv"] = str(out / "videos.csv")
    files["report_json"] = str(out / "report.json")
    files["report_md"] = str(out / "report.md")
    report["files"] = files
    (out / "report.json").write_text(dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return files


def _f(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _class_table(block: dict[str, Any]) -> list[str]:
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for row in block["per_class"]:
        lines.append(f"| {row['label']} | {_f(row['precision'])} | {_f(row['recall'])} | {_f(row['f1'])} | {row['support']} |")
    for name in ("macro_avg", "weighted_avg"):
        row = block[name]
        lines.append(f"| {name.replace('_', ' ')} | {_f(row['precision'])} | {_f(row['recall'])} | {_f(row['f1'])} | {row['support']} |")
    return lines


def _confusion_table(matrix: list[list[int]], labels: Sequence[str]) -> list[str]:
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, row in zip(labels, matrix):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def report_markdown(report: dict[str, Any]) -> str:
    """The report's tables for people."""
    fr = report["frame"]
    model, data = report.get("model", {}), report.get("data", {})
    lines = [
        f"# Evaluation of {model.get('name', 'model')} ({model.get('arch', '?')})",
        "",
        f"Data: `{data.get('root', '?')}`, split **{data.get('split', '?')}** ({data.get('split_reason', '')}), "
        f"{fr['n']} crops ({fr['reals']} real, {fr['fakes']} fake).",
        f"Threshold on p_fake: **{report['threshold']:.4f}** ({report.get('threshold_source', '')}).",
        "",
        "## Frame level",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key, name in (
        ("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("auc", "ROC-AUC"),
        ("average_precision", "average precision"), ("eer", "EER"), ("eer_threshold", "threshold at EER"),
        ("youden_j", "max Youden J"), ("youden_threshold", "threshold at max Youden J"),
        ("precision", "precision (fake)"), ("recall", "recall (fake)"), ("specificity", "specificity (real)"),
        ("f1", "F1 (fake)"), ("loss", "loss (cross-entropy)"),
    ):  # fmt: skip
        lines.append(f"| {name} | {_f(fr.get(key))} |")
    lines += ["", *_class_table(fr["classes"]), "", *_confusion_table(fr["classes"]["confusion"], ["real", "fake"]), ""]
    lines += ["## Per method (AUC against all reals)", "", "| method | crops | AUC | called fake | mean p_fake |", "|---|---|---|---|---|"]
    for row in report["per_method"]:
        lines.append(f"| {row['method']} | {row['n']} | {_f(row['auc'])} | {_f(row['called_fake'])} | {_f(row['mean_p_fake'])} |")
    if report.get("per_dataset"):
        lines += ["", "## Per dataset", "", "| dataset | crops | real | fake | AUC | AP | EER | accuracy | balanced accuracy |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in report["per_dataset"]:
            lines.append(f"| {row['dataset']} | {row['n']} | {row['reals']} | {row['fakes']} | {_f(row['auc'])} | "
                         f"{_f(row['average_precision'])} | {_f(row['eer'])} | {_f(row['accuracy'])} | {_f(row['balanced_accuracy'])} |")  # fmt: skip
        for row in report["per_dataset"]:
            lines += ["", f"Methods of {row['dataset']} (AUC against its reals):", "",
                      "| method | crops | AUC | called fake | mean p_fake |", "|---|---|---|---|---|"]  # fmt: skip
            for m in row["per_method"]:
                lines.append(f"| {m['method']} | {m['n']} | {_f(m['auc'])} | {_f(m['called_fake'])} | {_f(m['mean_p_fake'])} |")
    if report.get("video"):
        v = report["video"]
        lines += ["", "## Video level", "", f"{v['videos']} videos ({v['fake_videos']} fake).", "",
                  "| aggregation | AUC | accuracy |", "|---|---|---|"]  # fmt: skip
        for name in ("mean", "confident"):
            lines.append(f"| {name} | {_f(v[name]['auc'])} | {_f(v[name]['accuracy'])} |")
    if report.get("multiclass"):
        mc = report["multiclass"]
        lines += ["", "## Multiclass (argmax over methods)", "", f"accuracy {_f(mc['accuracy'])} on {mc['crops']} crops", "",
                  *_class_table(mc), "", *_confusion_table(mc["confusion"], mc["labels"])]  # fmt: skip
    return "\n".join(lines) + "\n"


def update_checkpoint_threshold(path: str | os.PathLike[str], threshold: float, info: dict[str, Any],
                                tta: str | None = None, val_figures: dict[str, Any] | None = None) -> None:
    """Write a calibrated threshold (and how it was found) into the checkpoint file, with the
    test-time views (``preprocessing.tta``) its scores were computed with: the two go together.

    ``val_figures`` (``val_auc``, ``val_datasets``, ...) measured on the val split while
    calibrating fill a checkpoint that has none (a merged or imported one), so that ``models
    info`` can show them; a training run's own figures are left as they are."""
    ckpt = load_checkpoint(path)
    ckpt["threshold"] = float(threshold)
    if tta is not None:
        ckpt["preprocessing"] = {**ckpt["preprocessing"], "tta": tta}
    metrics = dict(ckpt.get("metrics") or {})
    # The training run's figures at its own threshold no longer describe this one.
    for stale in ("val_accuracy_at_threshold", "val_balanced_accuracy_at_threshold", "val_datasets_at_threshold",
                  "threshold_split"):
        metrics.pop(stale, None)
    if val_figures and not isinstance(metrics.get("val_auc"), (int, float)):
        metrics.update(val_figures)
    metrics["threshold"] = float(threshold)
    metrics["threshold_method"] = info.get("method", metrics.get("threshold_method"))
    metrics["threshold_calibration"] = info
    ckpt["metrics"] = metrics
    save_checkpoint(ckpt, path)


def _val_figures(frame: pd.DataFrame, y_fake: np.ndarray, p_fake: np.ndarray) -> dict[str, Any]:
    """The val split's threshold-free figures, in the names ``dfdetect train`` records them under."""
    m = binary_metrics(y_fake, p_fake)
    out: dict[str, Any] = {
        "val_auc": m["auc"], "val_ap": m["average_precision"], "val_eer": m["eer"],
        "val_figures_from": "evaluate --threshold-from val",
    }  # fmt: skip
    datasets = per_dataset(frame, y_fake, p_fake, 0.5)
    if datasets:
        out["val_datasets"] = {d["dataset"]: {"crops": d["n"], "auc": d["auc"], "ap": d["average_precision"], "eer": d["eer"]}
                               for d in datasets}  # fmt: skip
        aucs = [d["auc"] for d in datasets if d["auc"] is not None]
        out["val_auc_mean"] = float(np.mean(aucs)) if aucs else None
    return out


def evaluate(
    model_path: str | os.PathLike[str],
    cfg,
    data_root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    device: Any = "cpu",
    split: str = "auto",
    threshold: float | None = None,
    threshold_from: str = "checkpoint",
    threshold_method: str | None = None,
    task_hook: Callable[[str, int], Any] | None = None,
    message: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score ``data_root`` with the checkpoint and write the report to ``out_dir``.

    ``threshold`` fixes the decision threshold; otherwise ``threshold_from``
    takes the checkpoint's, or (``val``) chooses one on the validation split
    with ``threshold_method`` and writes it back into the checkpoint file.
    ``task_hook(description, total)`` returns a context manager yielding a
    progress callback.
    """
    import contextlib

    say = message or (lambda text: None)
    hook = task_hook or (lambda description, total: contextlib.nullcontext(lambda n: None))
    if threshold_from not in THRESHOLD_SOURCES:
        raise UsageError(f"--threshold-from must be one of {', '.join(THRESHOLD_SOURCES)}")
    if threshold is not None and threshold_from != "checkpoint":
        raise UsageError("give either --threshold or --threshold-from val, not both")
    if threshold_method is not None and threshold_from != "val":
        raise UsageError("--threshold-method chooses how --threshold-from val picks the threshold: add --threshold-from val")
    if threshold_from == "val" and is_packaged_model(model_path):
        raise UsageError(
            f"{model_path} ships with dfdetect and is not rewritten: calibrate a copy "
            f"(cp {model_path} my_model.pt; dfdetect evaluate -m my_model.pt --threshold-from val ...)"
        )
    ensure_output_dir(out_dir)
    # The threshold is evaluate's own (--threshold, --threshold-from); the views are predict's.
    classifier = FaceClassifier.from_checkpoint(model_path, device=device).use_views(cfg.predict.tta)
    batch = cfg.predict.batch_size
    threads = cfg.runtime.num_threads or None
    data = resolve_eval_data(classifier, data_root, cfg, split)
    for note in data.notes:
        say(f"[yellow]note:[/] {note}")
    framing_note = _framing_mismatch(data.splits.table.face, classifier)
    if framing_note:
        say(f"[yellow]note:[/] {framing_note}")
    rows = data.rows()
    views = ", each crop and its mirror image averaged" if classifier.tta == "flip" else ""
    say(f"evaluating {classifier.name} ({classifier.arch}, {classifier.input_size}px{views}) on {len(rows)} crops of the "
        f"{data.split} split: {data.reason}")  # fmt: skip

    threshold_info: dict[str, Any]
    if threshold is not None:
        chosen, source = float(threshold), "given with --threshold"
        threshold_info = {"source": "option"}
    elif threshold_from == "val":
        val = data.rows("val")
        real, fake = val.real_fake_counts()
        if min(real, fake) < MIN_CALIBRATION_CROPS:
            raise UsageError(
                f"too few validation crops to choose a threshold: {real} real and {fake} fake "
                f"(at least {MIN_CALIBRATION_CROPS} of each); use more data, a larger --val-fraction, or --threshold"
            )
        if data.split in ("val", "all"):
            say(f"[yellow]note:[/] the threshold is chosen on crops that are also evaluated (the val split is part "
                f"of '{data.split}'): the figures at that threshold are optimistic")
        method = threshold_method or ((classifier.checkpoint_meta.get("config") or {}).get("train") or {}).get("threshold_method") or "eer"
        with hook(f"scoring {len(val)} val crops for the threshold", len(val)) as advance:
            val_probs = score_split(classifier, val, batch, threads, advance)
        y_fake = (val.frame["label"].to_numpy() == "fake").astype(np.int64)
        val_p_fake = 1.0 - val_probs[:, classifier.real_index]
        chosen = choose_threshold(y_fake, val_p_fake, method)
        source = f"chosen on the val split ({method}) and written into the checkpoint"
        threshold_info = {"source": "val", "method": method, "data": _root_names(data_root), "crops": len(val),
                          "tta": classifier.tta}
        update_checkpoint_threshold(model_path, chosen, threshold_info, tta=classifier.tta,
                                    val_figures=_val_figures(val.frame, y_fake, val_p_fake))
        say(f"threshold {chosen:.4f} ({method} on {len(val)} val crops) written into {model_path}")
    else:
        chosen, source = classifier.threshold, "stored in the checkpoint"
        threshold_info = {"source": "checkpoint", **{k: v for k, v in (classifier.checkpoint_meta.get("metrics") or {}).items() if k.startswith("threshold")}}

    if threshold_from == "val" and data.split == "val":
        probs = val_probs  # the split evaluated is the one just scored for the threshold
    else:
        with hook(f"scoring {len(rows)} crops", len(rows)) as advance:
            probs = score_split(classifier, rows, batch, threads, advance)
    report = build_report(rows.frame, rows.targets, probs, classifier.labels, chosen)
    report = {
        "model": {**classifier.describe(), "path": str(model_path)},
        "data": {
            "root": _root_names(data_root),
            **({"datasets": rows.dataset_counts()} if len(as_roots(data_root)) > 1 else {}),
            "split": data.split,
            "split_reason": data.reason,
            "crops": len(rows),
            "methods": rows.method_counts(),
            "settings": {**data.splits.settings, "limit_per_class": data.limit_per_class},
            "framing": data.splits.table.face,
            "framing_note": framing_note,
        },
        "threshold_source": source,
        "threshold_info": threshold_info,
        # predictions.csv marks crops whose p_fake is within this of the threshold.
        "borderline_band": cfg.predict.borderline_band,
        **report,
    }
    write_report(report, out_dir, rows.frame, probs, classifier.labels)
    save_resolved_config(cfg, out_dir)
    return report


def _root_names(data_root) -> str | list[str]:
    """The data's folder, or the list of them for several datasets."""
    roots = [str(Path(r).resolve()) for r in as_roots(data_root)]
    return roots[0] if len(roots) == 1 else roots


def summary_line(report: dict[str, Any]) -> str:
    fr = report["frame"]
    line = (
        f"{fr['n']} crops: AUC {_f(fr['auc'])}, accuracy {_f(fr['accuracy'])}, EER {_f(fr['eer'])}, "
        f"F1 {_f(fr['f1'])} at threshold {report['threshold']:.4f}"
    )
    for row in report.get("per_dataset") or []:
        line += f"; {row['dataset']}: AUC {_f(row['auc'])}, accuracy {_f(row['accuracy'])} ({row['n']} crops)"
    return line


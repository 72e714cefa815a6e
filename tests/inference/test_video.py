"""The streaming video scan on real videos (../shared): rows, sampling, tracks, annotation, errors, memory."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FFPP_C23, MULTIFACE_VIDEO, ORIGINAL_004, need_shared, with_display_rotation
from deepfake_cli.inference import video as video_mod
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.config import load_config
from deepfake_cli.errors import InputFileError, UsageError
from deepfake_cli.faces.detector import box_iou
from deepfake_cli.media.frames import sample_indices, video_info
from deepfake_cli.inference.video import (
    FRAME_COLUMNS,
    STAGES,
    predict_paths,
    predict_record,
    scan_video,
    video_pipeline,
    with_sampling,
)

ORIGINAL_519 = FFPP_C23 / "original_sequences" / "youtube" / "c23" / "videos" / "519.mp4"


def make_pipeline(ckpt, **overrides):
    cfg = load_config(overrides=overrides, environ={})
    return video_pipeline(FaceClassifier.from_checkpoint(ckpt), cfg), cfg


@pytest.fixture(scope="module")
def pipeline_004(sepcnn_ckpt):
    need_shared(ORIGINAL_004)
    return make_pipeline(sepcnn_ckpt, **{"video.every": 100})


def test_rows_follow_the_sampling_and_summary_holds_a_verdict(pipeline_004):
    pipeline, cfg = pipeline_004
    streamed = []
    result = scan_video(ORIGINAL_004, pipeline, cfg.video, on_row=streamed.append)
    assert result.rows == streamed and all(set(r) == set(FRAME_COLUMNS) for r in result.rows)
    assert sorted({r["frame"] for r in result.rows}) == [0, 100, 200, 300]
    assert [r["timestamp"] for r in result.rows if r["status"] == "face"][:4] == [0.0, 4.0, 8.0, 12.0]
    face_rows = [r for r in result.rows if r["status"] == "face"]
    assert len(face_rows) >= 4
    for r in face_rows:
        assert 0 <= r["x1"] < r["x2"] <= 1280 and 0 <= r["y1"] < r["y2"] <= 720
        assert r["det_prob"] >= 0.95 and 0.0 <= r["p_fake"] <= 1.0 and r["label"] in ("real", "fake")
        assert r["method"] is None  # binary model
    s = result.summary
    assert s["status"] == "ok" and s["verdict"] in ("real", "fake")
    # Samples 4 s apart (every 100th frame at 25 fps), video.redetect_every: each frame searched whole.
    assert s["frames"] == {"total": 309, "decoded": 4, "sampled": 4, "with_face": 4, "searched_whole": 4, "searched_near": 0,
                           "searched_changed": 0}
    assert set(s["p_fake_by_aggregate"]) == {"mean", "max", "confident"}
    assert s["p_fake"] == s["p_fake_by_aggregate"]["confident"]
    assert s["tracks"][0]["faces"] >= 4 and s["tracks"][0]["first_frame"] == 0
    assert set(s["timings"]) == set(STAGES) | {"total"} and s["timings"]["detect"] > 0
    assert s["annotated"] is None and s["error"] is None
    # predict's one record per video.
    record = predict_record(s)
    assert record["kind"] == "video" and record["verdict"] == s["verdict"] and record["p_fake"] == s["p_fake"]


def test_search_around_tracked_faces_gives_whole_frame_boxes(sepcnn_ckpt):
    """Between whole-frame searches (every 2 s) frames are searched around the faces before:
    fewer whole searches, the same faces and boxes as searching every frame whole."""
    need_shared(ORIGINAL_004)
    boxes = {}
    for redetect in (0.0, 2.0):
        pipeline, cfg = make_pipeline(sepcnn_ckpt, **{"video.every": 10, "video.end": 6.0, "video.redetect_every": redetect})
        result = scan_video(ORIGINAL_004, pipeline, cfg.video)
        frames = result.summary["frames"]
        assert frames["searched_whole"] + frames["searched_near"] == frames["sampled"] >= 15
        boxes[redetect] = {r["frame"]: (r["x1"], r["y1"], r["x2"], r["y2"]) for r in result.rows if r["status"] == "face"}
        if redetect == 0.0:
            assert frames["searched_near"] == 0
        else:
            assert frames["searched_whole"] <= 5 and frames["searched_near"] >= frames["sampled"] - 5
    assert boxes[0.0].keys() == boxes[2.0].keys() and len(boxes[0.0]) == frames["sampled"]
    same = [np.allclose(boxes[0.0][f], boxes[2.0][f], atol=0.2) for f in boxes[0.0]]
    assert sum(same) >= len(same) - 1, same


@pytest.mark.parametrize(
    "options",
    [{"video.frames": 3}, {"video.fps": 0.5, "video.end": 5.0}, {"video.every": 60, "video.start": 4.0, "video.end": 9.0}],
)
def test_frames_fps_start_end_sampling(sepcnn_ckpt, options):
    need_shared(ORIGINAL_004)
    pipeline, cfg = make_pipeline(sepcnn_ckpt, **options)
    result = scan_video(ORIGINAL_004, pipeline, cfg.video, keep_rows=True)
    v = cfg.video
    expected = sample_indices(video_info(ORIGINAL_004), every=None if v.frames or v.fps else v.every,
                              frames=v.frames, fps=v.fps, start=v.start, end=v.end)
    assert sorted({r["frame"] for r in result.rows}) == expected
    assert result.summary["frames"]["sampled"] == len(expected)


def test_seven_class_model_names_a_method(multiclass_ckpt):
    need_shared(ORIGINAL_004)
    pipeline, cfg = make_pipeline(multiclass_ckpt, **{"video.frames": 2})
    result = scan_video(ORIGINAL_004, pipeline, cfg.video)
    faces = [r for r in result.rows if r["status"] == "face"]
    assert faces and all(r["method"] in pipeline.classifier.labels[1:] for r in faces)
    assert result.summary["method"] in pipeline.classifier.labels[1:]


def test_multiface_clip_tracks_hold_one_person_each(sepcnn_ckpt):
    # Reference: every 2nd frame, where faces hardly move between samples and IoU alone
    # links them. At the default every 10th frame, no track may hold faces of two people
    # the reference sees at the same time (the walker and the boy in blue shared one).
    need_shared(MULTIFACE_VIDEO)

    def faces(every):
        pipeline, cfg = make_pipeline(sepcnn_ckpt, **{"video.every": every})
        rows = scan_video(MULTIFACE_VIDEO, pipeline, cfg.video).rows
        return [r for r in rows if r["status"] == "face"]

    reference = faces(2)
    spans = {}
    for r in reference:
        first, last = spans.get(r["track_id"], (r["frame"], r["frame"]))
        spans[r["track_id"]] = (min(first, r["frame"]), max(last, r["frame"]))
    people = defaultdict(set)
    scanned = faces(10)
    for r in scanned:
        same_frame = [q for q in reference if q["frame"] == r["frame"]]
        best = max(same_frame, key=lambda q: box_iou(box_of(q), box_of(r)), default=None)
        if best is not None and box_iou(box_of(best), box_of(r)) > 0.5:
            people[r["track_id"]].add(best["track_id"])
    # (A face can be found at one stride and not yet at the other: it is left out.)
    assert sum(len(refs) for refs in people.values()) >= 3 and len(people) >= 4
    for track_id, refs in people.items():
        for a in refs:
            for b in refs - {a}:
                overlap = min(spans[a][1], spans[b][1]) - max(spans[a][0], spans[b][0])
                assert overlap < 0, f"track {track_id} holds reference tracks {a} and {b}, seen together"
    # The people in view from start to end keep one track each.
    long_lived = [t for t, (first, last) in spans.items() if last - first >= 60]
    assert len(long_lived) >= 3
    for t in long_lived:
        assert sum(t in refs for refs in people.values()) == 1, (t, dict(people))


def box_of(row):
    return (row["x1"], row["y1"], row["x2"], row["y2"])


def test_multiface_clip_annotated_and_tracked(sepcnn_ckpt, tmp_path):
    need_shared(MULTIFACE_VIDEO)
    pipeline, cfg = make_pipeline(sepcnn_ckpt, **{"video.every": 15})
    out = tmp_path / "annotated.mp4"
    result = scan_video(MULTIFACE_VIDEO, pipeline, cfg.video, annotate_path=out)
    s = result.summary
    assert s["annotated"] == str(out) and not list(tmp_path.glob("*.partial*"))
    # Several people, each followed across frames.
    track_ids = {r["track_id"] for r in result.rows if r["status"] == "face"}
    assert len(track_ids) >= 3
    assert max(t["faces"] for t in s["tracks"]) >= 3
    assert s["frames"]["decoded"] == 105 and s["frames"]["sampled"] == 7
    # Every input frame, same size and rate, readable by OpenCV; boxes drawn on it.
    cap = cv2.VideoCapture(str(out))
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (1920, 1080)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(video_info(MULTIFACE_VIDEO).fps)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[::8, ::8].copy())
    cap.release()
    assert len(frames) == 105 and frames[0].shape == (135, 240, 3)
    original = cv2.VideoCapture(str(MULTIFACE_VIDEO))
    ok, first = original.read()
    original.release()
    face = next(r for r in result.rows if r["frame"] == 0 and r["status"] == "face")
    x1, y1 = int(face["x1"]) // 8, int(face["y1"]) // 8
    region = (slice(max(0, y1 - 2), y1 + 3), slice(max(0, x1 - 2), x1 + 3))
    diff = np.abs(frames[0][region].astype(int) - first[::8, ::8][region].astype(int)).mean()
    assert diff > 20  # the box outline is there


def test_phone_video_stored_sideways_is_scanned_and_annotated_upright(sepcnn_ckpt, tmp_path):
    """Frames stored turned a quarter left, with the container's rotation putting them upright."""
    need_shared(ORIGINAL_519)
    cap = cv2.VideoCapture(str(ORIGINAL_519))
    upright = [cap.read()[1] for _ in range(60)]
    cap.release()
    sideways = tmp_path / "sideways.mp4"
    writer = cv2.VideoWriter(str(sideways), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (480, 640))
    for frame in upright:
        writer.write(cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE))
    writer.release()
    phone = tmp_path / "phone.mp4"
    phone.write_bytes(with_display_rotation(sideways.read_bytes(), 90))

    pipeline, cfg = make_pipeline(sepcnn_ckpt, **{"video.every": 20})
    result = scan_video(phone, pipeline, cfg.video, annotate_path=tmp_path / "phone_annotated.mp4")
    assert result.summary["video_info"]["width"] == 640 and result.summary["video_info"]["height"] == 480
    faces = [r for r in result.rows if r["status"] == "face"]
    assert [r["frame"] for r in faces] == [0, 20, 40]  # the upright face, found on every sampled frame
    reference = pipeline.find_faces([cv2.cvtColor(upright[0], cv2.COLOR_BGR2RGB)])[0][0].box
    assert box_iou([faces[0][k] for k in ("x1", "y1", "x2", "y2")], reference) > 0.8
    out = cv2.VideoCapture(str(tmp_path / "phone_annotated.mp4"))
    assert (out.get(cv2.CAP_PROP_FRAME_WIDTH), out.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 480)
    assert int(out.get(cv2.CAP_PROP_FRAME_COUNT)) == 60


def test_video_without_faces_has_no_verdict(sepcnn_ckpt, tmp_path):
    path = tmp_path / "gray.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for k in range(20):
        writer.write(np.full((120, 160, 3), 60 + k, np.uint8))
    writer.release()
    pipeline, cfg = make_pipeline(sepcnn_ckpt, **{"video.every": 5})
    result = scan_video(path, pipeline, cfg.video, annotate_path=tmp_path / "gray_annotated.avi")
    assert result.summary["status"] == "no_face" and result.summary["verdict"] == "no_face"
    assert result.summary["p_fake"] is None and result.summary["tracks"] == []
    assert [(r["frame"], r["status"], r["p_fake"]) for r in result.rows] == [
        (0, "no_face", None), (5, "no_face", None), (10, "no_face", None), (15, "no_face", None)]
    assert int(cv2.VideoCapture(str(tmp_path / "gray_annotated.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == 20


def test_stream_without_frame_count_is_scanned(sepcnn_ckpt, tmp_path):
    # A bare MJPEG stream has no header with a frame count: it is counted by decoding.
    path = tmp_path / "gray.mjpeg"
    path.write_bytes(b"".join(cv2.imencode(".jpg", np.full((48, 64, 3), 10 * k, np.uint8))[1].tobytes()
                              for k in range(12)))
    pipeline, cfg = make_pipeline(sepcnn_ckpt, **{"video.frames": 3})
    result = scan_video(path, pipeline, cfg.video, annotate_path=tmp_path / "gray.avi")
    assert [r["frame"] for r in result.rows] == [2, 6, 10]
    assert result.summary["frames"]["decoded"] == 12 and result.summary["verdict"] == "no_face"


def test_unreadable_videos_raise_input_file_error(sepcnn_ckpt, tmp_path):
    need_shared(ORIGINAL_519)
    from media.test_frames import _faststart  # an MP4 whose index comes first: a cut copy still opens

    pipeline, cfg = make_pipeline(sepcnn_ckpt, **{"video.every": 150})
    data = ORIGINAL_519.read_bytes()
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut_stream.mp4").write_bytes(_faststart(data)[: len(data) // 2])
    for name, message in [("missing.mp4", "no such file"), ("text.mp4", "cannot open"),
                          ("cut.mp4", "cannot open"), ("cut_stream.mp4", "truncated")]:
        annotated = tmp_path / f"{name}.annotated.mp4"
        with pytest.raises(InputFileError, match=message):
            scan_video(tmp_path / name, pipeline, cfg.video, annotate_path=annotated)
        # No half-written annotated video is left behind.
        assert not annotated.exists() and not list(tmp_path.glob("*.partial*"))
    # Nothing to sample: --start after the end of the clip.
    late, cfg_late = make_pipeline(sepcnn_ckpt, **{"video.start": 60.0})
    with pytest.raises(InputFileError, match="no frame to sample"):
        scan_video(ORIGINAL_519, late, cfg_late.video)
    both, cfg_both = make_pipeline(sepcnn_ckpt, **{"video.frames": 3, "video.fps": 2.0})
    with pytest.raises(UsageError):
        scan_video(ORIGINAL_519, both, cfg_both.video)


def test_predict_paths_mixes_images_and_videos_in_order(sepcnn_ckpt, tmp_path):
    need_shared(ORIGINAL_004)
    from deepfake_cli.inference.pipeline import FacePipeline

    cfg = load_config(overrides={"video.frames": 2}, environ={})
    classifier = FaceClassifier.from_checkpoint(sepcnn_ckpt)
    image = tmp_path / "blank.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "text.mp4").write_text("no video")
    paths = [image, ORIGINAL_004, tmp_path / "text.mp4", image]
    records = list(predict_paths(paths, FacePipeline.from_config(classifier, cfg), cfg))
    assert [r["status"] for r in records] == ["no_face", "ok", "error", "no_face"]
    assert records[1]["kind"] == "video" and records[1]["frames"]["sampled"] == 2
    assert records[1]["verdict"] in ("real", "fake")


def test_memory_stays_flat_while_annotating(sepcnn_ckpt, tmp_path):
    """The 309 decoded 720p frames (850 MB) never sit in memory together."""
    need_shared(ORIGINAL_004)
    assert video_mod.IN_FLIGHT_MAX_BYTES <= 128 * 2**20
    pipeline, cfg = make_pipeline(sepcnn_ckpt, **{"video.every": 30})
    baseline = _rss()
    peak = [baseline]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = scan_video(ORIGINAL_004, pipeline, cfg.video, annotate_path=tmp_path / "a.mp4", keep_rows=False)
    finally:
        done.set()
        watcher.join()
    assert result.rows == [] and result.summary["frames"]["decoded"] == 309
    # Holding the whole video would add ~900 MB; the bounded queues and batches stay far below.
    assert peak[0] - baseline < 450 * 2**20, f"RSS grew by {(peak[0] - baseline) / 2**20:.0f} MB"


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status on this system")


def test_a_face_coming_into_view_between_whole_frame_searches_is_found_at_once(sepcnn_ckpt):
    """004.mp4 cuts, inside its picture-in-picture inset, to a face (Chewbacca's) at frame
    ~235: the first sampled frame after it (240) is searched around the anchor's tracked
    face only, and the change in the inset sends it to be searched there too, so the new face
    is found there, as searching every sampled frame whole finds it, not at the next whole
    search (frame 250)."""
    need_shared(ORIGINAL_004)
    faces = {}
    for redetect in (0.0, 2.0):
        pipeline, cfg = make_pipeline(sepcnn_ckpt, **{"video.every": 10, "video.start": 8.0, "video.end": 9.7,
                                                      "video.redetect_every": redetect})
        result = scan_video(ORIGINAL_004, pipeline, cfg.video)
        faces[redetect] = {}
        for r in result.rows:
            if r["status"] == "face":
                faces[redetect].setdefault(r["frame"], []).append((r["x1"], r["y1"], r["x2"], r["y2"]))
        frames = result.summary["frames"]
        if redetect == 2.0:
            assert frames["searched_whole"] == 1 and frames["searched_changed"] >= 1, frames
    assert sorted(faces[0.0]) == [200, 210, 220, 230, 240], faces[0.0]
    assert len(faces[0.0][240]) == 2 and all(len(faces[0.0][f]) == 1 for f in (200, 210, 220, 230))
    for f, boxes in faces[0.0].items():
        assert len(faces[2.0][f]) == len(boxes), (f, faces[2.0][f], boxes)
        for box in boxes:
            assert max(box_iou(box, other) for other in faces[2.0][f]) >= 0.9


def test_two_annotated_writers_of_one_path_do_not_share_their_partial_file(tmp_path):
    """Two scans annotating into one folder (overlapping cron jobs): each writes its own
    partial file; the last to finish wins, whole."""
    from deepfake_cli.media.annotate import AnnotatedVideoWriter

    target = tmp_path / "clip.annotated.mp4"
    first, second = AnnotatedVideoWriter(target, 10.0, (64, 48)), AnnotatedVideoWriter(target, 10.0, (64, 48))
    assert first.partial != second.partial
    for _ in range(3):
        first.write(np.full((48, 64, 3), 40, np.uint8))
    for _ in range(5):
        second.write(np.full((48, 64, 3), 200, np.uint8))
    second.close()
    first.close()
    assert video_info(target).frame_count == 3 and [p.name for p in tmp_path.iterdir()] == [target.name]


class _LosingWriter:
    """An OpenCV writer on a disk that fills up: frames after the first ``keep`` are lost
    without a word, and ``truncate`` cuts the file at release (no moov atom)."""

    def __init__(self, real, keep, truncate=None, path=None):
        self.real, self.keep, self.truncate, self.path, self.n = real, keep, truncate, path, 0

    def write(self, frame):
        self.n += 1
        if self.n <= self.keep:
            self.real.write(frame)

    def release(self):
        self.real.release()
        if self.truncate is not None:
            with open(self.path, "r+b") as fh:
                fh.truncate(self.truncate)

    def isOpened(self):
        return self.real.isOpened()


@pytest.mark.parametrize("keep, truncate, needle", [
    (4, None, "4 of 10 frames read back"),
    (10, 200, "200 bytes that do not open as a video"),
    (10, 0, "0 bytes written"),
])
def test_an_annotated_copy_not_written_whole_is_an_error_and_removed(tmp_path, keep, truncate, needle):
    """OpenCV's writer swallows ENOSPC: close() reads back what was written before the rename."""
    from deepfake_cli.media.annotate import AnnotatedVideoWriter

    target = tmp_path / "clip.annotated.mp4"
    writer = AnnotatedVideoWriter(target, 10.0, (64, 48))
    writer._writer = _LosingWriter(writer._writer, keep, truncate, writer.partial)
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    with pytest.raises(InputFileError, match=f"clip.annotated.mp4: the annotated copy was not written whole \\({needle}"):
        writer.close()
    assert list(tmp_path.iterdir()) == []
    # Written whole, it is checked the same way and appears.
    ok = AnnotatedVideoWriter(target, 10.0, (64, 48))
    for i in range(10):
        ok.write(np.full((48, 64, 3), 20 * i, np.uint8))
    assert ok.close() == target and video_info(target).frame_count == 10


def test_a_full_disk_while_annotating_is_that_videos_error_row_and_exit_1(sepcnn_ckpt, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import deepfake_cli.media.annotate as annotate
    from deepfake_cli.cli.app import app

    need_shared(ORIGINAL_004)
    real_open = annotate.AnnotatedVideoWriter._open

    def open_on_a_full_disk(self, size):
        real_open(self, size)
        self._writer = _LosingWriter(self._writer, 3, 1000, self.partial)

    monkeypatch.setattr(annotate.AnnotatedVideoWriter, "_open", open_on_a_full_disk)
    out = tmp_path / "ann.mp4"
    result = CliRunner().invoke(app, ["video", str(ORIGINAL_004), "--annotate", str(out), "--json", "--model",
                                      str(sepcnn_ckpt), "--end", "1", "--every", "5"])
    assert result.exit_code == 1, result.stderr
    summary = json.loads(result.stdout)
    summary = summary[0] if isinstance(summary, list) else summary
    assert summary["status"] == "error" and "the annotated copy was not written whole" in summary["error"]
    assert "annotated:" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_video_opencv_cannot_annotate_is_that_videos_error(tmp_path, monkeypatch):
    # A time-lapse with one frame in 1000 s: OpenCV's mp4v writer (the fallback without
    # PyAV's H.264) will not open. Before, that was a usage error (exit 2) that stopped the whole batch.
    from deepfake_cli.media import annotate
    from deepfake_cli.media.annotate import AnnotatedVideoWriter

    monkeypatch.setattr(annotate, "h264_available", lambda: False)
    writer = AnnotatedVideoWriter(tmp_path / "slow.annotated.mp4", 0.001)
    with pytest.raises(InputFileError, match="cannot write mp4v video at 0.001 fps, 64x48"):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_a_face_seen_for_a_moment_does_not_vote_however_dense_the_sampling(pipeline_004):
    # At every 2nd frame the face a cut brings into 004.mp4's inset (frames 238-242, 0.2 s)
    # has 3 faces, as many as min_track_faces: it voted, and its p_fake could decide the
    # video's verdict; at every 10th frame it has 1 face and did not.
    pipeline, cfg = pipeline_004
    video_cfg = with_sampling(cfg.video, every=2)
    video_cfg.start, video_cfg.end = 8.0, 10.4
    tracks = scan_video(ORIGINAL_004, pipeline, video_cfg).summary["tracks"]
    anchor, inset = max(tracks, key=lambda t: t["faces"]), min(tracks, key=lambda t: t["faces"])
    assert anchor["votes"] and anchor["seconds"] >= 2.0
    assert inset["faces"] >= cfg.video.min_track_faces and inset["seconds"] < cfg.video.min_track_seconds
    assert not inset["votes"]

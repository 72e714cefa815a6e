"""The web app through FastAPI's TestClient: every endpoint, every error, limits and temp files."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MESONET_PHOTOS, ORIGINAL_004, PHOTOS, make_checkpoint, need_shared
from deepfake_cli.config import Config
from deepfake_cli.errors import ConfigError
from deepfake_cli.serve import uploads
from deepfake_cli.serve.app import WORKER_CHECKPOINT_ENV, WORKER_CONFIG_ENV, app_from_env, create_app

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

MAX_MB = 1.0


def _client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=False)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def jpeg_upload(path: Path, name: str | None = None, content_type: str = "image/jpeg"):
    return {"file": (name or path.name, path.read_bytes(), content_type)}


NO_FACE_PNG = png_bytes(np.full((240, 320, 3), (30, 90, 200), dtype=np.uint8))


@pytest.fixture(scope="module")
def installed_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("installed_models")
    make_checkpoint(folder / "tiny_installed.pt", threshold=0.4)
    return folder


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(sepcnn_ckpt, installed_models, upload_dir):
    cfg = Config()
    cfg.serve.max_upload_mb = MAX_MB
    cfg.serve.upload_dir = str(upload_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DFDETECT_MODELS_DIR", str(installed_models))
        app = create_app(sepcnn_ckpt, cfg)
        with _client(app) as c:
            c.get("/models")  # the installed list is read once, while the variable is set
            yield c


def uploads_left(upload_dir: Path) -> list[Path]:
    """Files under the configured upload folder (the server keeps its own folder inside)."""
    return [p for p in upload_dir.rglob("*") if p.is_file()]


def assert_error(response, status: int, needle: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and needle in detail, detail


# ---------------------------------------------------------------- health, models, page, docs


def test_health_reports_model_device_version(client):
    from deepfake_cli import __version__

    data = client.get("/health").json()
    assert data["status"] == "ok" and data["model"] == "sepcnn" and data["arch"] == "sepcnn"
    assert data["device"] == "cpu" and data["version"] == __version__ and data["face_detection"] is True
    assert data["busy"] == 0 and data["capacity"] >= 2
    # Uptime monitors and load balancers probe with HEAD.
    head = client.head("/health")
    assert head.status_code == 200 and head.content == b""


def test_models_lists_loaded_and_installed_without_server_paths(client):
    data = client.get("/models").json()
    assert data["loaded"]["name"] == "sepcnn" and data["loaded"]["labels"] == ["real", "fake"]
    assert data["loaded"]["input_size"] == 128 and data["loaded"]["device"] == "cpu"
    # The user's models come first; the shipped default model follows.
    assert data["installed"][0]["name"] == "tiny_installed"
    assert data["installed"][0]["threshold"] == pytest.approx(0.4)
    assert all("path" not in m for m in data["installed"])
    assert "resnet18" in data["architectures"]


def test_models_cuts_server_paths_in_the_loaded_models_provenance(tmp_path):
    from deepfake_cli.serve.service import without_paths

    ckpt = make_checkpoint(tmp_path / "m.pt", provenance={"data": "/srv/secret/ffpp/train",
                                                           "init": {"path": "/home/analyst/meso.pt", "sha256": "ab"}})
    with _client(create_app(ckpt, Config())) as c:
        loaded = c.get("/models").json()["loaded"]
    assert loaded["provenance"]["data"] == "train" and loaded["provenance"]["init"] == {"path": "meso.pt", "sha256": "ab"}
    assert "/srv" not in json.dumps(loaded) and "/home" not in json.dumps(loaded)
    assert without_paths(["relative/x", "C", 3, None]) == ["relative/x", "C", 3, None]


def test_page_docs_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in ('type="file"', "/predict/video", "/gradcam", "fetch("):
        assert needle in page.text
    assert "<script src=" not in page.text  # no framework, nothing fetched from elsewhere
    assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/models", "/predict", "/gradcam"} <= set(paths)
    assert "413" in paths["/predict"]["post"]["responses"]


def test_docs_pages_load_their_assets_from_the_app_not_a_cdn(client):
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) + re.findall(r"""url:\s*'([^']+)'""", html)
        assert urls, html
        assert not re.search(r"https?://", html), f"{page} names an external host: {html}"
        for url in urls:
            assert url.startswith("/"), url
            assert client.get(url).status_code == 200, url
    assert any(u.endswith("swagger-ui-bundle.js") for u in re.findall(r'src="([^"]+)"', client.get("/docs").text))


# ---------------------------------------------------------------- /predict


def test_predict_face_photo_matches_the_cli_pipeline(client, sepcnn_ckpt):
    need_shared(PHOTOS)
    from deepfake_cli.inference.classifier import FaceClassifier
    from deepfake_cli.inference.pipeline import FacePipeline
    from deepfake_cli.inference.predict import predict_images

    photo = PHOTOS / "multiface.jpg"
    r = client.post("/predict", files=jpeg_upload(photo))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["status"] == "ok" and data["model"] == "sepcnn" and data["face_count"] == 6
    assert data["image"] == {"width": 1200, "height": 630}
    top = max(data["faces"], key=lambda f: f["p_fake"])
    # The first report's contract, from the most suspicious face.
    assert data["prediction"] == top["label"] and data["p_fake"] == pytest.approx(top["p_fake"], abs=1e-6)
    assert data["probabilities"]["fake"] == pytest.approx(top["p_fake"], abs=1e-6)
    assert data["probabilities"]["real"] + data["probabilities"]["fake"] == pytest.approx(1.0)
    assert data["confidence"] == pytest.approx(max(data["probabilities"].values()))
    face = data["faces"][0]
    assert set(face) == {"index", "box", "det_prob", "p_fake", "label", "margin", "borderline", "method", "probs"}
    assert len(face["box"]) == 4 and face["det_prob"] > 0.95
    # The same pipeline as `dfdetect predict`: the same faces and scores.
    pipeline = FacePipeline.from_config(FaceClassifier.from_checkpoint(sepcnn_ckpt), Config())
    record = next(predict_images([photo], pipeline, 10**8))
    assert [f["box"] for f in record["faces"]] == [f["box"] for f in data["faces"]]
    assert [f["p_fake"] for f in record["faces"]] == [f["p_fake"] for f in data["faces"]]


def test_predict_no_face_is_200_with_status(client):
    r = client.post("/predict", files={"file": ("blue.png", NO_FACE_PNG, "image/png")})
    assert r.status_code == 200
    data = r.json()
    assert data["status"] == "no_face" and data["face_count"] == 0 and data["faces"] == []
    assert data["prediction"] is None and data["confidence"] is None and data["probabilities"] is None


def test_predict_trailing_slash_and_octet_stream_by_extension(client):
    need_shared(MESONET_PHOTOS)
    photo = MESONET_PHOTOS / "df" / "df00204.jpg"
    r = client.post("/predict/", files=jpeg_upload(photo, content_type="application/octet-stream"))
    assert r.status_code == 200 and r.json()["status"] in ("ok", "no_face")


def test_threshold_and_multiclass_without_detection(tmp_path, multiclass_ckpt):
    crop = png_bytes(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    cfg = Config()
    cfg.face.detect = False
    cfg.predict.threshold = 0.0
    data = _client(create_app(multiclass_ckpt, cfg)).post("/predict", files={"file": ("c.png", crop, "image/png")}).json()
    assert data["status"] == "ok" and data["prediction"] == "fake" and data["threshold"] == 0.0
    assert data["confidence"] == pytest.approx(data["p_fake"])
    assert data["method"] in ("DeepFakeDetection", "Deepfakes", "Face2Face", "FaceShifter", "FaceSwap", "NeuralTextures")
    assert len(data["faces"][0]["probs"]) == 7 and data["faces"][0]["det_prob"] is None
    assert data["probabilities"]["real"] == pytest.approx(data["faces"][0]["probs"]["original"], abs=1e-5)


def test_borderline_verdicts_in_the_apis_json_as_in_the_clis(tmp_path, sepcnn_ckpt):
    """/predict and /predict/video say how close a verdict is to the threshold, with the CLI's field names."""
    need_shared(PHOTOS, ORIGINAL_004)
    from deepfake_cli.serve.schemas import FaceOut, HealthOut, PredictOut, TrackOut, VideoOut

    photo = PHOTOS / "kate_siegel.jpg"
    cfg = Config()
    cfg.serve.upload_dir = str(tmp_path)
    with _client(create_app(sepcnn_ckpt, cfg)) as c:
        p_fake = c.post("/predict", files=jpeg_upload(photo)).json()["p_fake"]
        video_p = c.post("/predict/video", params={"frames": 3, "aggregate": "max"},
                         files=video_upload(ORIGINAL_004.read_bytes(), "004.mp4")).json()["p_fake"]
    for threshold, borderline in ((p_fake - 0.01, True), (p_fake + 0.03, True), (max(0.0, p_fake - 0.3), False)):
        cfg.predict.threshold = threshold
        with _client(create_app(sepcnn_ckpt, cfg)) as c:
            data = c.post("/predict", files=jpeg_upload(photo)).json()
            assert c.get("/health").json()["borderline_band"] == 0.1
        assert data["borderline"] is borderline and data["margin"] == pytest.approx(p_fake - threshold, abs=2e-6)
        assert data["verdict"] == ("fake" if p_fake >= threshold else "real")  # the verdict is unchanged
        assert data["faces"][0]["borderline"] is borderline
    cfg.predict.threshold = video_p + 0.02
    cfg.predict.borderline_band = 0.05
    with _client(create_app(sepcnn_ckpt, cfg)) as c:
        data = c.post("/predict/video", params={"frames": 3, "aggregate": "max"},
                      files=video_upload(ORIGINAL_004.read_bytes(), "004.mp4")).json()
        assert c.get("/health").json()["borderline_band"] == 0.05
    assert data["verdict"] == "real" and data["borderline"] is True and data["margin"] == pytest.approx(-0.02, abs=2e-6)
    assert {"borderline", "margin"} <= set(data["tracks"][0]) and {"borderline", "margin"} <= set(data["columns"])
    faces = [row for row in data["rows"] if row["status"] == "face"]
    assert all(row["borderline"] == (abs(row["margin"]) < 0.05) for row in faces)
    for model, fields in ((PredictOut, {"borderline", "margin"}), (VideoOut, {"borderline", "margin"}),
                          (FaceOut, {"borderline", "margin"}), (TrackOut, {"borderline", "margin"}),
                          (HealthOut, {"borderline_band"})):
        assert fields <= set(model.model_fields), model


# ---------------------------------------------------------------- errors


def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[:2000]


@pytest.mark.parametrize(
    "files, status, needle",
    [
        ({"file": ("notes.txt", b"hello", "text/plain")}, 415, "expected an image"),
        ({"file": ("clip.mp4", b"\x00" * 64, "video/mp4")}, 415, "videos go to POST /predict/video"),
        ({"file": ("scan.pdf", b"%PDF-1.4", "application/octet-stream")}, 415, "'.pdf' file"),
        ({"file": ("fake.jpg", b"this is not an image", "image/jpeg")}, 422, "not a recognised image format"),
        ({"file": ("cut.jpg", _truncated_jpeg(), "image/jpeg")}, 422, "truncated"),
        ({"file": ("zero.png", b"", "image/png")}, 422, "empty file"),
        ({"picture": ("a.png", NO_FACE_PNG, "image/png")}, 422, "send the file as a multipart part named 'file'"),
        ([("file", ("a.png", NO_FACE_PNG, "image/png")), ("file", ("b.png", NO_FACE_PNG, "image/png"))], 400, "Too many files"),
        ({"file": ("big.png", b"\x89PNG" + b"x" * int(MAX_MB * 2**20), "image/png")}, 413, "upload too large"),
    ],
)
def test_predict_upload_errors_are_json(client, files, status, needle):
    assert_error(client.post("/predict", files=files), status, needle)


def test_wrong_request_shapes_are_json(client):
    assert_error(client.post("/predict", json={"image": "x"}), 415, "multipart/form-data")
    assert_error(client.post("/predict", data={"file": "x"}), 415, "multipart/form-data")
    assert_error(client.get("/predict"), 405, "Method Not Allowed")
    assert_error(client.get("/no/such/page"), 404, "Not Found")
    # A declared Content-Length over the limit is refused before the body is read.
    r = client.post("/predict", content=b"x" * 2**21, headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(r, 413, "upload too large")


def test_exactly_at_the_limit_is_accepted_one_byte_more_is_not(client):
    size = int(MAX_MB * 2**20)
    header = png_bytes(np.zeros((8, 8, 3), dtype=np.uint8))
    at_limit = header + b"\0" * (size - len(header))
    # PNG decoders ignore trailing bytes: at the limit it decodes (no face), one more byte is 413.
    assert client.post("/predict", files={"file": ("a.png", at_limit, "image/png")}).json()["status"] == "no_face"
    assert_error(client.post("/predict", files={"file": ("a.png", at_limit + b"\0", "image/png")}), 413, "too large")


def test_streamed_body_is_cut_off_at_the_limit(sepcnn_ckpt):
    """A chunked upload (no Content-Length) is refused once it passes the limit, not after reading it all."""
    cfg = Config()
    cfg.serve.max_upload_mb = 0.25
    app = create_app(sepcnn_ckpt, cfg)
    chunk = b"x" * 65536
    pulled = 0
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        pulled += 1
        if pulled == 1:
            head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
            return {"type": "http.request", "body": head, "more_body": True}
        return {"type": "http.request", "body": chunk, "more_body": pulled < 400}  # 25 MB offered

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["detail"].startswith("upload too large")
    limit_chunks = uploads.body_limit(0.25) // len(chunk)
    assert pulled <= limit_chunks + 3, f"read {pulled} chunks for a limit of {limit_chunks}"


# ---------------------------------------------------------------- /predict/video


def video_upload(data: bytes, name: str = "clip.mp4", content_type: str = "video/mp4"):
    return {"file": (name, data, content_type)}


@pytest.fixture(scope="module")
def blue_video(tmp_path_factory) -> bytes:
    """A real, decodable mp4 without a face."""
    import cv2

    path = tmp_path_factory.mktemp("video") / "blue.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for _ in range(20):
        writer.write(np.full((120, 160, 3), (200, 90, 30), dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def test_predict_video_verdict_tracks_and_rows(client, upload_dir):
    need_shared(ORIGINAL_004)
    r = client.post("/predict/video", params={"frames": 4}, files=video_upload(ORIGINAL_004.read_bytes(), "004.mp4"))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["status"] == "ok" and data["prediction"] in ("real", "fake") and data["model"] == "sepcnn"
    assert data["probabilities"]["fake"] == pytest.approx(data["p_fake"]) and data["confidence"] >= 0.5
    assert data["frames"]["sampled"] == 4 and data["video_info"]["frame_count"] == 309
    assert data["sampling"] == {"frames": 4} and data["aggregate"] == "confident"
    assert data["face_count"] == len(data["rows"]) == 4  # one face per sampled frame of this interview
    assert len(data["tracks"]) == 1 and data["tracks"][0]["faces"] == 4
    assert "video" not in data["columns"] and set(data["rows"][0]) == set(data["columns"])
    assert str(upload_dir) not in r.text and uploads.TEMP_PREFIX not in r.text  # our temp path stays ours
    assert uploads_left(upload_dir) == []


def test_predict_video_csv_download(client, upload_dir):
    need_shared(ORIGINAL_004)
    params = {"frames": 3, "format": "csv", "aggregate": "max"}
    r = client.post("/predict/video", params=params, files=video_upload(ORIGINAL_004.read_bytes(), name="a.MOV", content_type="application/octet-stream"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"] and r.headers["x-verdict"] in ("real", "fake")
    lines = r.text.strip().splitlines()
    assert lines[0].split(",")[:4] == ["frame", "timestamp", "status", "track_id"] and len(lines) == 4
    assert uploads_left(upload_dir) == []


def test_predict_video_without_a_face_is_200_no_face(client, blue_video, upload_dir):
    r = client.post("/predict/video", params={"every": 5}, files=video_upload(blue_video, "blue.webm", "video/webm"))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["status"] == "no_face" and data["prediction"] is None and data["probabilities"] is None
    assert data["tracks"] == [] and data["frames"]["sampled"] == 4
    assert {row["status"] for row in data["rows"]} == {"no_face"}
    assert uploads_left(upload_dir) == []


def test_predict_video_errors_and_cleanup(client, blue_video, upload_dir):
    cases = [
        (video_upload(b"this is not a video"), {}, 422, "upload: cannot open video"),
        (video_upload(blue_video[: len(blue_video) // 2]), {}, 422, "upload:"),
        (video_upload(b""), {}, 422, "upload:"),
        (video_upload(blue_video), {"start": 60}, 422, "no frame to sample"),
        (video_upload(blue_video), {"every": 0}, 422, "every"),
        (video_upload(blue_video), {"start": 1e308}, 422, "no frame to sample"),
        (video_upload(blue_video), {"end": "inf"}, 422, "finite"),
        (video_upload(blue_video), {"every": 5, "fps": 2}, 422, "not every and fps"),
        (video_upload(blue_video), {"format": "xml"}, 422, "format"),
        (video_upload(NO_FACE_PNG, "a.png", "image/png"), {}, 415, "images go to POST /predict"),
        (video_upload(b"#!/bin/sh", "run.sh", "application/x-sh"), {}, 415, "expected a video"),
        (video_upload(b"\0" * (int(MAX_MB * 2**20) + 1)), {}, 413, "upload too large"),
    ]
    for files, params, status, needle in cases:
        r = client.post("/predict/video", params=params, files=files)
        assert_error(r, status, needle)
        assert str(upload_dir) not in r.text
    assert uploads_left(upload_dir) == []


def test_video_temp_file_is_ours_and_removed_when_the_scanner_crashes(client, upload_dir, monkeypatch):
    import deepfake_cli.inference.video

    seen = []

    def crashing_scan(path, pipeline, video_cfg, **kw):
        seen.append((Path(path), Path(path).read_bytes()))
        raise RuntimeError("decoder crashed")

    monkeypatch.setattr(deepfake_cli.inference.video, "scan_video", crashing_scan)
    r = client.post("/predict/video", files=video_upload(b"some bytes", name="../../../../tmp/evil.sh", content_type="video/mp4"))
    assert_error(r, 500, "internal error (RuntimeError)")
    (path, content), = seen
    assert path.parent.parent == upload_dir and path.parent.name.startswith("dfdetect-uploads-")
    assert path.name.startswith(uploads.TEMP_PREFIX) and path.suffix == ".mp4"
    assert content == b"some bytes" and "evil" not in path.name
    assert uploads_left(upload_dir) == []


# ---------------------------------------------------------------- /gradcam


def test_gradcam_overlay_png_of_the_most_suspicious_face(client):
    need_shared(PHOTOS)
    photo = PHOTOS / "multiface.jpg"
    faces = client.post("/predict", files=jpeg_upload(photo)).json()["faces"]
    r = client.post("/gradcam", files=jpeg_upload(photo))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(r.content)))
    index = int(r.headers["x-face-index"])
    # The most suspicious face (an untrained model scores faces almost alike: compare scores, not indices).
    assert faces[index]["p_fake"] == pytest.approx(max(f["p_fake"] for f in faces), abs=1e-5)
    assert int(r.headers["x-face-count"]) == 6 and r.headers["x-target"] in ("real", "fake")
    assert float(r.headers["x-p-fake"]) == pytest.approx(faces[index]["p_fake"], abs=1e-5)
    x1, y1, x2, y2 = faces[index]["box"]
    side = max(x2 - x1, y2 - y1) * 1.3  # the checkpoint's framing: square, margin 0.3
    assert picture.ndim == 3 and abs(picture.shape[0] - side) <= 2 and abs(picture.shape[1] - side) <= 2


def test_gradcam_face_target_and_sheet(client):
    need_shared(PHOTOS)
    photo = PHOTOS / "multiface.jpg"
    real = client.post("/gradcam", params={"face": 1, "target": "real"}, files=jpeg_upload(photo))
    fake = client.post("/gradcam", params={"face": 1, "target": "fake"}, files=jpeg_upload(photo))
    assert real.headers["x-face-index"] == "1" and real.headers["x-target"] == "real" and fake.headers["x-target"] == "fake"
    assert real.content != fake.content
    sheet = client.post("/gradcam", params={"face": 1, "target": "all", "view": "sheet"}, files=jpeg_upload(photo))
    overlay = np.asarray(Image.open(io.BytesIO(real.content)))
    picture = np.asarray(Image.open(io.BytesIO(sheet.content)))
    assert sheet.status_code == 200 and picture.shape[1] > 2 * overlay.shape[1] // 2 and picture.shape[0] > 600


def test_gradcam_no_face_and_errors(client):
    r = client.post("/gradcam", files={"file": ("blue.png", NO_FACE_PNG, "image/png")})
    assert r.status_code == 200 and r.json()["status"] == "no_face"
    need_shared(MESONET_PHOTOS)
    photo = MESONET_PHOTOS / "real" / "real00240.jpg"
    assert_error(client.post("/gradcam", params={"face": 7}, files=jpeg_upload(photo)), 422, "no face 7")
    assert_error(client.post("/gradcam", params={"target": "bogus"}, files=jpeg_upload(photo)), 422, "unknown Grad-CAM target")
    assert_error(client.post("/gradcam", params={"target": "all"}, files=jpeg_upload(photo)), 422, "view=sheet")
    assert_error(client.post("/gradcam", params={"view": "movie"}, files=jpeg_upload(photo)), 422, "view")
    assert_error(client.post("/gradcam", files={"file": ("a.txt", b"x", "text/plain")}), 415, "expected an image")


# ---------------------------------------------------------------- concurrency, CORS, workers, imports


def test_concurrent_requests_give_the_serial_answers(client):
    """Detection and classification share one model between threads: answers must not mix."""
    need_shared(MESONET_PHOTOS, PHOTOS)
    images = [PHOTOS / "multiface.jpg", *sorted(MESONET_PHOTOS.glob("*/*.jpg"))]
    uploads_ = [(p.name, p.read_bytes()) for p in images]
    kinds = [("/predict", name, data) for name, data in uploads_] + [("/gradcam", name, data) for name, data in uploads_[:2]]

    def call(kind):
        path, name, data = kind
        r = client.post(path, files={"file": (name, data, "image/jpeg")})
        assert r.status_code == 200, r.text
        if path == "/gradcam":
            return r.headers.get("x-p-fake"), r.content
        return [(f["box"], f["p_fake"]) for f in r.json()["faces"]]

    serial = [call(k) for k in kinds]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(call, kinds * 2))
    assert concurrent == serial * 2


def test_cors_is_off_by_default_and_on_when_asked(client, sepcnn_ckpt):
    preflight = {"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/predict", headers=preflight).headers
    assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "http://elsewhere.example"}).headers
    cfg = Config()
    cfg.serve.cors = True
    cfg.face.detect = False
    open_client = _client(create_app(sepcnn_ckpt, cfg))
    r = open_client.options("/predict", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    simple = open_client.get("/health", headers={"Origin": "http://a.example"})
    assert simple.headers["access-control-allow-origin"] == "*"
    assert "x-face-index" in simple.headers["access-control-expose-headers"].lower()


def test_app_from_env_is_the_workers_factory(sepcnn_ckpt, monkeypatch):
    cfg = Config()
    cfg.face.detect = False
    cfg.serve.max_upload_mb = 3.0
    monkeypatch.setenv(WORKER_CHECKPOINT_ENV, str(sepcnn_ckpt))
    monkeypatch.setenv(WORKER_CONFIG_ENV, json.dumps(cfg.to_dict()))
    worker = _client(app_from_env())
    assert worker.get("/health").json()["face_detection"] is False
    monkeypatch.delenv(WORKER_CHECKPOINT_ENV)
    with pytest.raises(ConfigError, match=WORKER_CHECKPOINT_ENV):
        app_from_env()


def test_the_web_app_does_not_import_typer():
    code = "import sys, deepfake_cli.serve.app; print('typer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- uploads module


@pytest.mark.parametrize(
    "kind, declared, filename, expected",
    [
        ("image", "image/jpeg", "x.bin", ".jpg"),
        ("image", "image/png; charset=binary", None, ".png"),
        ("image", "application/octet-stream", "photo.WEBP", ".webp"),
        ("image", None, "no_extension", ".jpg"),
        ("video", "video/quicktime", "../../etc/passwd", ".mov"),
        ("video", "", "C:\\clips\\a.MKV", ".mkv"),
        ("video", "application/octet-stream", "clip", ".mp4"),
    ],
)
def test_check_media_picks_an_allow_listed_suffix(kind, declared, filename, expected):
    assert uploads.check_media(kind, declared, filename) == expected


@pytest.mark.parametrize(
    "kind, declared, filename",
    [("image", "text/html", "a.jpg"), ("image", "image/heic", "a.heic"), ("video", "image/png", "a.png"),
     ("video", "application/octet-stream", "run.sh"), ("image", "", "evil.php")],
)
def test_check_media_refuses_other_types(kind, declared, filename):
    with pytest.raises(uploads.UnsupportedMediaType):
        uploads.check_media(kind, declared, filename)


def test_temp_file_has_our_name_and_is_removed_even_on_error(tmp_path):
    source = io.BytesIO(b"video bytes")
    with uploads.spooled_to_temp_file(source, ".mp4", tmp_path) as path:
        assert path.parent == tmp_path and path.name.startswith(uploads.TEMP_PREFIX) and path.suffix == ".mp4"
        assert path.read_bytes() == b"video bytes"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with uploads.spooled_to_temp_file(source, ".webm", tmp_path):
            raise RuntimeError("scanner crashed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        with uploads.spooled_to_temp_file(source, ".sh", tmp_path):
            pass


# ---------------------------------------------------------------- GIFs, upload folder, stopping, multipart


def gif_bytes(frames: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buf, "GIF", save_all=len(images) > 1, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


def test_gifs_as_in_the_cli_a_still_one_is_an_image_an_animated_one_a_video(client, upload_dir):
    need_shared(PHOTOS / "paul_rudd.jpg")
    face = np.asarray(Image.open(PHOTOS / "paul_rudd.jpg").convert("RGB").resize((320, 400)))
    still = gif_bytes([face])
    r = client.post("/predict", files={"file": ("still.gif", still, "image/gif")})
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["face_count"] == 1, r.text
    animated = gif_bytes([face, face[:, ::-1].copy(), face])
    assert_error(client.post("/predict", files={"file": ("anim.gif", animated, "image/gif")}), 422, "send it to POST /predict/video")
    r = client.post("/predict/video", params={"every": 1}, files={"file": ("anim.gif", animated, "image/gif")})
    assert r.status_code == 200, r.text
    assert r.json()["frames"]["sampled"] == 3 and r.json()["status"] == "ok"
    r = client.post("/predict/video", files={"file": ("still.gif", still, "image/gif")})  # a one-frame video
    assert r.status_code == 200 and r.json()["frames"]["total"] == 1, r.text
    assert uploads_left(upload_dir) == []


def test_the_upload_folder_is_the_servers_own_checked_at_start_and_removed_at_stop(tmp_path, sepcnn_ckpt):
    cfg = Config()
    cfg.serve.upload_dir = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match="serve.upload_dir"):
        create_app(sepcnn_ckpt, cfg)
    cfg.serve.upload_dir = str(tmp_path)
    app = create_app(sepcnn_ckpt, cfg)
    own = app.state.service.upload_dir
    assert own.parent == tmp_path and own.name.startswith("dfdetect-uploads-")
    with _client(app):
        (own / "dfdetect-upload-left.mp4").write_bytes(b"x")  # as a scan killed mid-way leaves it
    assert list(tmp_path.iterdir()) == []  # lifespan shutdown: the folder and what was in it are gone


def test_a_stopping_server_or_a_client_gone_stops_a_running_scan(tmp_path, sepcnn_ckpt):
    need_shared(ORIGINAL_004)
    from deepfake_cli.errors import ScanCancelled

    cfg = Config()
    cfg.serve.upload_dir = str(tmp_path)
    app = create_app(sepcnn_ckpt, cfg)
    service = app.state.service
    asked = []

    def gone_after_three_frames() -> bool:
        asked.append(1)
        return len(asked) > 3

    with open(ORIGINAL_004, "rb") as fh, pytest.raises(ScanCancelled):
        service.predict_video(fh, ".mp4", {"every": 1}, should_stop=gone_after_three_frames)
    assert len(asked) == 4 and uploads_left(tmp_path) == []
    with _client(app) as c:
        service.stopping.set()  # as on SIGTERM: the scan stops at its first frame, the client gets 503
        r = c.post("/predict/video", files=video_upload(ORIGINAL_004.read_bytes(), "004.mp4"))
        assert_error(r, 503, "server is shutting down")
        assert r.headers["retry-after"] == "5"
        assert uploads_left(tmp_path) == []


def test_a_file_part_without_a_filename_says_what_to_send(client):
    r = client.post("/predict", data={"file": "hello"}, files={"other": ("x.png", NO_FACE_PNG, "image/png")})
    assert_error(r, 422, "send the file as a multipart part named 'file' with a filename")
    assert "UploadFile" not in r.text and "class" not in r.text


def test_a_requests_sampling_replaces_the_servers_configured_one(tmp_path, sepcnn_ckpt):
    need_shared(ORIGINAL_004)
    cfg = Config()
    cfg.video.frames = 3
    cfg.serve.upload_dir = str(tmp_path)
    with _client(create_app(sepcnn_ckpt, cfg)) as c:
        data = ORIGINAL_004.read_bytes()
        assert c.post("/predict/video", files=video_upload(data)).json()["sampling"] == {"frames": 3}
        r = c.post("/predict/video", params={"every": 150}, files=video_upload(data))
        assert r.status_code == 200 and r.json()["sampling"] == {"every": 150}, r.text
        assert c.post("/predict/video", params={"fps": 0.5}, files=video_upload(data)).json()["sampling"] == {"fps": 0.5}


def test_the_configured_pixel_limit_is_in_force_above_pillows_own(client, sepcnn_ckpt, upload_dir):
    """A 9990x9990 PNG (99.8 Mpx) is under the 100 M default though over Pillow's own 89.5 M."""
    buf = io.BytesIO()
    Image.new("1", (9990, 9990)).save(buf, "PNG", optimize=False, compress_level=9)
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]  # nothing large is decoded
    assert_error(client.post("/predict", files={"file": ("big.png", cut, "image/png")}), 422, "truncated or corrupt")
    cfg = Config()
    cfg.serve.upload_dir = str(upload_dir)
    cfg.predict.max_image_pixels = 50_000_000
    with _client(create_app(sepcnn_ckpt, cfg)) as small:
        r = small.post("/predict", files={"file": ("big.png", cut, "image/png")})
    assert_error(r, 422, "too many pixels (9990x9990 > 50,000,000)")


def test_an_app_whose_lifespan_never_runs_makes_no_upload_folder(tmp_path, sepcnn_ckpt):
    cfg = Config()
    cfg.serve.upload_dir = str(tmp_path)
    create_app(sepcnn_ckpt, cfg)
    assert list(tmp_path.iterdir()) == []  # was an empty dfdetect-uploads-* left behind
    app = create_app(sepcnn_ckpt, cfg)
    with _client(app):
        assert [p.name.startswith("dfdetect-uploads-") for p in tmp_path.iterdir()] == [True]
    assert list(tmp_path.iterdir()) == []


def test_a_full_upload_folder_is_507_with_the_reason(client, blue_video, upload_dir, monkeypatch):
    import errno
    import shutil

    def full_disk(source, out, length=0):
        out.write(b"\x00" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", full_disk)
    r = client.post("/predict/video", files=video_upload(blue_video, "blue.mp4"))
    assert_error(r, 507, "no room for the upload in the server's upload folder (No space left on device)")
    assert r.headers["retry-after"] == "60"
    assert uploads_left(upload_dir) == []


def test_upload_folders_of_a_killed_server_are_swept_at_start(tmp_path, sepcnn_ckpt):
    import os
    import subprocess
    import time

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"dfdetect-uploads-{dead.pid}-abcd1234"
    stale.mkdir()
    (stale / "dfdetect-upload-x.mp4").write_bytes(b"an upload")
    legacy = tmp_path / "dfdetect-uploads-q9x_zz1"  # no process id: an older version's, left alone
    legacy.mkdir()
    for p in (stale, legacy):
        os.utime(p, (time.time() - 3600,) * 2)
    cfg = Config()
    cfg.serve.upload_dir = str(tmp_path)
    with _client(create_app(sepcnn_ckpt, cfg)) as c:
        own = c.app.state.service.upload_dir
        assert own.name.startswith(f"dfdetect-uploads-{os.getpid()}-")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([own.name, legacy.name])


# ---------------------------------------------------------------- annotated videos


def _codec(data: bytes) -> tuple[str, int, int, int]:
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, stream.width, stream.height, stream.frames


@pytest.fixture
def annotating(tmp_path, sepcnn_ckpt):
    cfg = Config()
    cfg.serve.upload_dir = str(tmp_path)
    with _client(create_app(sepcnn_ckpt, cfg)) as c:
        yield c


def test_an_annotated_video_is_written_served_as_h264_with_ranges_and_found_by_its_url_only(annotating, tmp_path):
    need_shared(ORIGINAL_004)
    from deepfake_cli.media.annotate import h264_available

    data = ORIGINAL_004.read_bytes()
    plain = annotating.post("/predict/video", params={"frames": 3}, files=video_upload(data, "004.mp4"))
    assert plain.status_code == 200 and plain.json()["annotated_url"] is None
    r = annotating.post("/predict/video", params={"frames": 3, "annotate": "true"}, files=video_upload(data, "004.mp4"))
    assert r.status_code == 200, r.text
    result = r.json()
    url = result["annotated_url"]
    assert url.startswith("/annotated/") and url.endswith(".mp4") and len(url.rsplit("/", 1)[1]) == 36
    assert result["verdict"] == plain.json()["verdict"] and str(tmp_path) not in r.text  # no server path in the answer
    video = annotating.get(url)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.headers["accept-ranges"] == "bytes" and "inline" in video.headers["content-disposition"]
    assert video.headers["x-content-type-options"] == "nosniff"
    if h264_available():
        assert _codec(video.content) == ("h264", 1280, 720, 309)  # 004.mp4's size, every frame drawn
    # A browser seeks with Range requests: 206 with the bytes asked for.
    part = annotating.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == video.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(video.content)}"
    assert annotating.head(url).status_code == 200
    # The upload itself is gone; the annotated copy is the one file left, in the server's own folder.
    (left,) = uploads_left(tmp_path)
    assert left.name == url.rsplit("/", 1)[1] and left.parent.parent.name.startswith("dfdetect-uploads-")
    # Every other name is 404, whatever it tries.
    others = [
        "/annotated/" + "A" * 32 + ".mp4",  # the form of a name, never written
        "/annotated/" + url.rsplit("/", 1)[1][:-4] + ".MP4",
        "/annotated/..%2F..%2Fetc%2Fpasswd", "/annotated/%2e%2e", "/annotated/%2E%2E%2Fhealth",
        "/annotated/" + "..%2F" * 3 + left.parent.name + "%2F" + left.name,
        "/annotated/", "/annotated/%00.mp4",
    ]
    for other in others:
        miss = annotating.get(other)
        assert miss.status_code == 404 and miss.headers["content-type"].startswith("application/json"), (other, miss.text)
    # With format=csv the URL comes in a header.
    csv = annotating.post("/predict/video", params={"frames": 2, "annotate": "true", "format": "csv"},
                          files=video_upload(data, "004.mp4"))
    assert csv.status_code == 200 and annotating.get(csv.headers["x-annotated-url"]).status_code == 200


def test_annotated_videos_expire_and_the_oldest_go_beyond_the_room_they_may_take(tmp_path, sepcnn_ckpt, blue_video, monkeypatch):
    import os
    import time

    cfg = Config()
    cfg.serve.upload_dir = str(tmp_path)
    cfg.serve.annotated_ttl = 60
    with _client(create_app(sepcnn_ckpt, cfg)) as c:
        urls = []
        for _ in range(3):
            r = c.post("/predict/video", params={"annotate": "true"}, files=video_upload(blue_video, "blue.mp4"))
            assert r.status_code == 200, r.text
            urls.append(r.json()["annotated_url"])
        assert all(c.get(u).status_code == 200 for u in urls)
        store = c.app.state.service.annotated
        # An hour old: past serve.annotated_ttl, gone at the next look.
        old = store.folder / urls[0].rsplit("/", 1)[1]
        os.utime(old, (time.time() - 3600,) * 2)
        assert c.get(urls[0]).status_code == 404 and not old.exists()
        # Beyond serve.annotated_max_mb in all, the oldest go first; the newest is kept.
        os.utime(store.folder / urls[1].rsplit("/", 1)[1], (time.time() - 30,) * 2)
        store.max_bytes = 1
        r = c.post("/predict/video", params={"annotate": "true"}, files=video_upload(blue_video, "blue.mp4"))
        newest = r.json()["annotated_url"]
        assert [c.get(u).status_code for u in (urls[1], urls[2], newest)] == [404, 404, 200]
        own = c.app.state.service.upload_dir
    assert not own.exists() and list(tmp_path.iterdir()) == []  # the server stopped: its videos went with it


def test_no_room_for_an_annotated_video_is_507_and_leaves_nothing(annotating, blue_video, tmp_path, monkeypatch):
    import errno

    from deepfake_cli.media import annotate

    def full_disk(self, frame):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(annotate.AnnotatedVideoWriter, "write", full_disk)
    r = annotating.post("/predict/video", params={"annotate": "true"}, files=video_upload(blue_video, "blue.mp4"))
    assert_error(r, 507, "no room for the annotated video in the server's upload folder")
    assert r.headers["retry-after"] == "60"
    assert uploads_left(tmp_path) == []


def test_workers_share_one_folder_of_annotated_videos(sepcnn_ckpt, tmp_path, monkeypatch):
    from deepfake_cli.serve.app import WORKER_ANNOTATED_ENV

    shared = tmp_path / "shared"
    shared.mkdir()
    cfg = Config()
    cfg.serve.upload_dir = str(tmp_path)
    monkeypatch.setenv(WORKER_CHECKPOINT_ENV, str(sepcnn_ckpt))
    monkeypatch.setenv(WORKER_CONFIG_ENV, json.dumps(cfg.to_dict()))
    monkeypatch.setenv(WORKER_ANNOTATED_ENV, str(shared))
    first, second = app_from_env(), app_from_env()
    name = "B" * 32 + ".mp4"
    (shared / name).write_bytes(b"as one worker wrote it")
    with _client(first) as a, _client(second) as b:
        assert a.app.state.service.annotated.folder == shared == b.app.state.service.annotated.folder
        assert b.get(f"/annotated/{name}").content == b"as one worker wrote it"
    assert (shared / name).exists()  # a worker stopping leaves the shared folder to 'dfdetect serve'

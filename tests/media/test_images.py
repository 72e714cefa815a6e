from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from deepfake_cli.errors import InputFileError
from deepfake_cli.media.images import load_image


@pytest.mark.parametrize("fmt, mode", [("PNG", "L"), ("JPEG", "CMYK"), ("PNG", "RGBA"), ("BMP", "RGB"),
                                       ("WEBP", "RGB"), ("TIFF", "RGB"), ("PNG", "P"), ("PNG", "I;16")])
def test_any_mode_becomes_rgb(tmp_path, fmt, mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    path = tmp_path / f"x.{fmt.lower()}"
    img.save(path, fmt)
    arr = load_image(path)
    assert arr.shape == (30, 40, 3) and arr.dtype == np.uint8


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_image(path).shape == (40, 20, 3)


def test_bytes_input_and_bomb_limit(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (200, 200)).save(buf, "PNG")
    assert load_image(buf.getvalue()).shape == (200, 200, 3)
    with pytest.raises(InputFileError, match="too many pixels"):
        load_image(buf.getvalue(), max_pixels=100 * 100)


@pytest.mark.parametrize(
    "content, needle",
    [(b"", "empty"), (b"hello, not an image", "not a recognised image")],
)
def test_bad_files(tmp_path, content, needle):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(InputFileError, match=needle):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buf, "JPEG")
    p = tmp_path / "trunc.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputFileError, match="truncated"):
        load_image(p)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputFileError, match="directory"):
        load_image(tmp_path)


def test_a_pipe_is_read_whole(tmp_path):
    """``cat x.jpg | dfdetect predict /dev/stdin`` or ``<(...)``: a FIFO has no size and cannot seek."""
    import os
    import threading

    buf = io.BytesIO()
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(buf, "PNG")
    fifo = tmp_path / "pipe"
    for payload, expect in ((buf.getvalue(), (30, 40, 3)), (b"", None)):
        os.mkfifo(fifo)
        writer = threading.Thread(target=lambda: fifo.write_bytes(payload))
        writer.start()
        if expect is None:
            with pytest.raises(InputFileError, match="nothing was piped in"):
                load_image(fifo)
        else:
            assert load_image(fifo).shape == expect
        writer.join()
        fifo.unlink()


def test_an_endless_device_is_refused_not_read_forever(monkeypatch):
    import deepfake_cli.media.images as images

    monkeypatch.setattr(images, "PIPE_MAX_BYTES", 2**20)
    with pytest.raises(InputFileError, match="more than 1 MB from a pipe or device"):
        load_image("/dev/zero")


def _finishes(fn, fifo, seconds=15.0):
    """Run ``fn`` in a thread; a blocked open of ``fifo`` is released by opening its write end."""
    import os
    import threading

    result = {}

    def target():
        try:
            result["value"] = fn()
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblock it before failing
        t.join(5)
        pytest.fail(f"{fn} blocked on the named pipe for {seconds} s")
    return result


def test_a_named_pipe_without_writer_is_given_up_not_waited_for_forever(tmp_path, monkeypatch):
    import os

    import deepfake_cli.media.images as images

    monkeypatch.setattr(images, "PIPE_WAIT_SECONDS", 0.3)
    fifo = tmp_path / "a.jpg"
    os.mkfifo(fifo)
    result = _finishes(lambda: load_image(fifo), fifo)
    assert isinstance(result.get("error"), InputFileError)
    assert "nothing read from a named pipe for 0.3 s" in str(result["error"])
    # Sniffing a name (GIF animation, photo renamed .mp4) never opens a pipe.
    gif = tmp_path / "b.gif"
    os.mkfifo(gif)
    assert _finishes(lambda: images.is_animated_gif(gif), gif)["value"] is False
    assert _finishes(lambda: images.still_image_format(gif), gif)["value"] is None


def test_a_named_pipe_video_is_an_error_not_a_blocking_open(tmp_path):
    import os

    from deepfake_cli.media.frames import open_video

    fifo = tmp_path / "a.mp4"
    os.mkfifo(fifo)
    result = _finishes(lambda: open_video(fifo), fifo)
    assert "a named pipe, not a regular file" in str(result.get("error"))


def _big_sparse_png(truncated: bool, size=(9990, 9990)) -> bytes:
    """A 99.8-Mpx PNG (under the 100 M default, over Pillow's own 89,478,485), zeros in mode "1":
    about 12 KB; ``truncated`` cuts its pixel data so that nothing large is ever decoded."""
    buf = io.BytesIO()
    Image.new("1", size).save(buf, "PNG", optimize=False, compress_level=9)
    data = buf.getvalue()
    return data[: len(data) // 2] if truncated else data


def test_the_configured_pixel_limit_is_the_one_in_force_above_pillows_own():
    data = _big_sparse_png(truncated=True)
    # Past Pillow's bomb check (it refused this at 89.5 Mpx): decoding starts and finds the cut.
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        load_image(data)
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        load_image(data, max_pixels=200_000_000)
    with pytest.raises(InputFileError, match=r"too many pixels \(9990x9990 > 50,000,000\); raise predict.max_image_pixels"):
        load_image(data, max_pixels=50_000_000)


def test_a_small_configured_pixel_limit_refuses_with_the_size_and_the_setting(tmp_path):
    p = tmp_path / "small.png"
    Image.new("RGB", (300, 200)).save(p)
    assert load_image(p, max_pixels=60_000).shape == (200, 300, 3)
    with pytest.raises(InputFileError, match=r"too many pixels \(300x200 > 59,999\)"):
        load_image(p, max_pixels=59_999)


@pytest.mark.slow
def test_a_whole_big_sparse_png_under_the_default_limit_is_decoded():
    assert load_image(_big_sparse_png(truncated=False)).shape == (9990, 9990, 3)


def test_a_symlink_loop_or_a_broken_link_is_not_no_such_file(tmp_path):
    import os

    from deepfake_cli.media.frames import open_video

    os.symlink(tmp_path / "b.jpg", tmp_path / "a.jpg")
    os.symlink(tmp_path / "a.jpg", tmp_path / "b.jpg")
    os.symlink(tmp_path / "gone.mp4", tmp_path / "v.mp4")
    with pytest.raises(InputFileError, match="a.jpg: symbolic link loop"):
        load_image(tmp_path / "a.jpg")
    with pytest.raises(InputFileError, match=r"v.mp4: broken symbolic link \(to .*gone.mp4, which does not exist\)"):
        open_video(tmp_path / "v.mp4")
    with pytest.raises(InputFileError, match="nope.jpg: no such file"):
        load_image(tmp_path / "nope.jpg")

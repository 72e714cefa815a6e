from __future__ import annotations

import io

from deepfake_cli.media.sources import expand_sources


def touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_folder_recursive_sorted_filtered(tmp_path):
    for name in ["b/2.png", "a/1.jpg", "a/0.JPEG", "c.txt.bak", "z.webp", ".hidden.jpg", "clip.mp4", "notes.md"]:
        touch(tmp_path / name)
    got = [p.relative_to(tmp_path).as_posix() for p in expand_sources([str(tmp_path)])]
    assert got == ["clip.mp4", "z.webp", "a/0.JPEG", "a/1.jpg", "b/2.png"]


def test_glob_list_stdin_and_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = touch(tmp_path / "s" / "a.jpg"), touch(tmp_path / "s" / "deep" / "b.jpg")
    assert list(expand_sources(["s/**/*.jpg"])) == sorted([a.relative_to(tmp_path), b.relative_to(tmp_path)])
    (tmp_path / "list.txt").write_text("# a comment\ns/a.jpg\n\ns/deep/b.jpg\n")
    assert [str(p) for p in expand_sources(["list.txt"])] == ["s/a.jpg", "s/deep/b.jpg"]
    assert [str(p) for p in expand_sources(["-"], stdin=io.StringIO("s/a.jpg\n"))] == ["s/a.jpg"]
    # A missing explicit path is passed through so the caller reports it.
    assert [str(p) for p in expand_sources(["missing.jpg"])] == ["missing.jpg"]


def test_each_file_once_and_globs_that_match_nothing_said(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "v" / "a.mp4")
    touch(tmp_path / "v" / "b.mkv")
    unmatched = []
    got = [str(p) for p in expand_sources(["v/a.mp4", "./v/a.mp4", "v/*.mp4", "v", "v/*.nomatch", "missing.mp4",
                                           "missing.mp4"], on_no_match=unmatched.append)]
    assert got == ["v/a.mp4", "v/b.mkv", "missing.mp4"]
    assert unmatched == ["v/*.nomatch"]


def test_pipes_in_folders_and_globs_are_skipped_with_a_note(tmp_path, monkeypatch):
    """A named pipe in a folder would block the scan forever (open() waits for a writer)."""
    import os

    monkeypatch.chdir(tmp_path)
    os.mkdir("d")
    os.mkfifo("d/a.jpg")
    touch(tmp_path / "d" / "b.jpg")
    notes = []
    assert [str(p) for p in expand_sources(["d"], on_note=notes.append)] == ["d/b.jpg"]
    assert notes == ["skipped d/a.jpg: a named pipe, not a regular file"]
    notes.clear()
    assert [str(p) for p in expand_sources(["d/*.jpg"], on_note=notes.append)] == ["d/b.jpg"]
    assert notes == ["skipped d/a.jpg: a named pipe, not a regular file"]


def test_a_folder_with_nothing_to_scan_is_noted_among_other_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    touch(tmp_path / "empty" / "notes.md")
    touch(tmp_path / "a.jpg")
    notes = []
    assert [str(p) for p in expand_sources(["empty", "a.jpg"], on_note=notes.append)] == ["a.jpg"]
    assert notes == ["nothing to scan in folder empty"]
    notes.clear()
    # Alone, it is the caller's "no image or video files found" error: no note on top of it.
    assert list(expand_sources(["empty"], on_note=notes.append)) == [] and notes == []

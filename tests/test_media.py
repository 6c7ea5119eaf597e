"""pgnface.io.images: the one list of image and video suffixes."""

import pytest

from pgnface.io.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, image_files, is_image


def test_image_files_recurses_sorted_and_ignores_case_and_other_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.JPG", "a.png", "sub/c.webp", "notes.txt", "clip.mp4"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.jpg").mkdir()  # a directory with an image suffix is not an image
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)] == ["a.png", "b.JPG", "sub/c.webp"]
    assert is_image(tmp_path / "x.JpEg") and not is_image(tmp_path / "x.mp4")


def test_image_files_names_the_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        image_files(tmp_path / "nowhere")


def test_suffix_lists_are_disjoint_lowercase_tuples():
    # Tuples keep "try each suffix in turn" lookups deterministic (train.folder).
    assert isinstance(IMAGE_SUFFIXES, tuple) and isinstance(VIDEO_SUFFIXES, tuple)
    assert not set(IMAGE_SUFFIXES) & set(VIDEO_SUFFIXES)
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES + VIDEO_SUFFIXES)

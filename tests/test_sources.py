"""The split-list parser, the seeded image draw and ImageNet folder resolution."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_fake_imagenet
from vtt import sources
from vtt.sources import SourceError, parse_split

GOOD = "/n01440764/ILSVRC2012_val_00000293.JPEG 0\n/n15075141/ILSVRC2012_val_00049174.JPEG 999\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "list.txt"
    path.write_text(text)
    return path


def test_parser_reads_wnid_file_and_class(tmp_path):
    entries = parse_split(write(tmp_path, GOOD))
    assert [(e.wnid, e.filename, e.class_index, e.line) for e in entries] == [
        ("n01440764", "ILSVRC2012_val_00000293.JPEG", 0, 1),
        ("n15075141", "ILSVRC2012_val_00049174.JPEG", 999, 2),
    ]
    assert entries[0].key == "n01440764/ILSVRC2012_val_00000293.JPEG"


def test_parser_ignores_blank_lines_and_comments(tmp_path):
    assert len(parse_split(write(tmp_path, "# a comment\n\n" + GOOD + "\n"))) == 2


@pytest.mark.parametrize(
    "line, message",
    [
        ("n01440764/ILSVRC2012_val_00000293.JPEG 0", "expected '/<wnid>"),
        ("/n01440764/ILSVRC2012_val_00000293.JPEG", "expected '/<wnid>"),
        ("/n01440764/ILSVRC2012_val_293.JPEG 0", "expected '/<wnid>"),
        ("/n01440764/ILSVRC2012_val_00000293.jpg 0", "expected '/<wnid>"),
        ("/n01440764/ILSVRC2012_val_00000293.JPEG -1", "expected '/<wnid>"),
        ("/n01440764/ILSVRC2012_val_00000293.JPEG 1000", "outside 0-999"),
        ("/n01440764/ILSVRC2012_val_00000000.JPEG 3", "not an ImageNet validation index"),
        ("/n01440764/ILSVRC2012_val_00050001.JPEG 3", "not an ImageNet validation index"),
        ("/n01440764/ILSVRC2012_val_00000293.JPEG 0 extra", "expected '/<wnid>"),
    ],
)
def test_parser_rejects_a_bad_line_naming_file_and_line_number(tmp_path, line, message):
    path = write(tmp_path, GOOD + line + "\n")
    with pytest.raises(SourceError, match=message) as info:
        parse_split(path)
    assert f"{path}:3:" in str(info.value)


def test_parser_rejects_a_duplicate_file(tmp_path):
    with pytest.raises(SourceError, match=r"already listed on line 1"):
        parse_split(write(tmp_path, GOOD + "/n01440764/ILSVRC2012_val_00000293.JPEG 0\n"))


def test_parser_rejects_an_empty_or_missing_list(tmp_path):
    with pytest.raises(SourceError, match="empty"):
        parse_split(write(tmp_path, "\n# nothing\n"))
    with pytest.raises(SourceError, match="not found"):
        parse_split(tmp_path / "nope.txt")


def test_shipped_split_lists_have_the_documented_shape():
    ctest = parse_split(sources.SPLITS_DIR / "ctest10k.txt")
    cval = parse_split(sources.SPLITS_DIR / "cval1k.txt")
    assert len(ctest) == 10_000 and len(cval) == 1_000
    assert len({e.class_index for e in ctest}) == 1000
    index = lambda e: int(e.filename[15:23])  # noqa: E731
    assert min(map(index, ctest)) >= 25_275 and max(map(index, ctest)) <= 50_000
    assert max(map(index, cval)) <= 4_971
    assert not {e.filename for e in ctest} & {e.filename for e in cval}


def test_the_same_seed_draws_the_same_images_and_another_seed_others():
    entries = parse_split(sources.SPLITS_DIR / "ctest10k.txt")
    first = sources.select(entries, 500, seed=7)
    assert first == sources.select(entries, 500, seed=7)
    assert first != sources.select(entries, 500, seed=8)
    assert len(first) == len(set(first)) == 500
    assert sources.select(entries, None, seed=7) == entries


@pytest.mark.parametrize("by_wnid", [True, False])
def test_imagenet_folder_is_found_flat_or_by_wnid(tmp_path, by_wnid):
    entries = sources.select(parse_split(sources.SPLITS_DIR / "ctest10k.txt"), 3, seed=1)
    root = make_fake_imagenet(tmp_path / "val", entries, by_wnid=by_wnid)
    refs = sources.resolve_imagenet(entries, root, "ctest10k")
    assert [r.key for r in refs] == [e.key for e in entries]
    assert all(r.path.is_file() and r.class_index == e.class_index for r, e in zip(refs, entries))


def test_missing_imagenet_files_are_named(tmp_path):
    entries = sources.select(parse_split(sources.SPLITS_DIR / "ctest10k.txt"), 4, seed=1)
    root = make_fake_imagenet(tmp_path / "val", entries[:2], by_wnid=True)
    with pytest.raises(SourceError, match="2 of 4 ctest10k images are missing") as info:
        sources.resolve_imagenet(entries, root, "ctest10k")
    assert entries[2].key in str(info.value) and entries[3].key in str(info.value)
    with pytest.raises(SourceError, match="folder not found"):
        sources.resolve_imagenet(entries, tmp_path / "nowhere", "ctest10k")


def test_resolve_needs_an_imagenet_folder_for_imagenet_splits():
    with pytest.raises(SourceError, match="--imagenet-val"):
        sources.resolve("ctest10k")
    with pytest.raises(SourceError, match="unknown split"):
        sources.resolve("imagenet")


def test_folder_split_lists_images_recursively(photo_dir):
    (photo_dir / "notes.txt").write_text("not an image")
    refs = sources.resolve(f"folder:{photo_dir}")
    assert [r.key for r in refs] == sorted(p.name for p in photo_dir.iterdir() if p.suffix != ".txt")

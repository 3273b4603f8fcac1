"""Photo list and split rules of the image data set (the slow test reads the built data/images)."""
import json

import pytest

from tidegate.services.image_forensics.sources import PHOTO_LIST, assign_splits


def test_photo_list_is_explicit_and_well_formed():
    spec = json.loads(PHOTO_LIST.read_text())
    names = [f"{pkg}/{name}" for kind in ("debian", "wheels") for pkg, entry in spec[kind].items()
             for name in entry["photos"]]
    assert len(names) == len(set(names)) >= 25
    assert {"mate-backgrounds", "plasma-workspace-wallpapers"} <= set(spec["debian"])
    assert {"scikit-image", "scikit-learn", "matplotlib"} <= set(spec["wheels"])


def test_splits_are_by_source_deterministic_and_stable():
    sources = [f"pkg/photo{i}" for i in range(40)]
    a = assign_splits(sources)
    assert a == assign_splits(list(reversed(sources)))  # order of discovery does not matter
    counts = {s: list(a.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 24, "val": 6, "test": 10}
    assert set(a) == set(sources)  # every photo in exactly one split


@pytest.mark.slow
def test_built_manifest_splits_by_photo_and_has_controls():
    """Needs `tidegate data images` to have been run (data/images/manifest.jsonl)."""
    from pathlib import Path

    from tidegate.services.image_forensics.data import read_manifest

    path = Path("data/images")
    if not (path / "manifest.jsonl").is_file():
        pytest.skip("data/images not built")
    records = read_manifest(path)
    split_of = {}
    for r in records:
        if r["source"] is not None:
            assert split_of.setdefault(r["source"], r["split"]) == r["split"], r["source"]
    kinds = {(r["family"], r["kind"]) for r in records}
    assert ("real", "processed") in kinds and ("real", "clean") in kinds
    assert len({r["family"] for r in records} - {"real"}) >= 4

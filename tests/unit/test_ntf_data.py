"""Photo list and split rules of the image data set (no downloads)."""
import json

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

"""tests/benchmarks/plant_bugs.py stays able to plant its bugs.

The script patches exact spots of the source; when that code changes, its
anchors must follow, or the check that each planted bug is caught would
quietly stop planting anything. (Running the plants takes minutes and root:
`python tests/benchmarks/plant_bugs.py`.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks import plant_bugs

REPO = Path(__file__).resolve().parents[2]


def test_nine_plants_one_per_surviving_bug():
    assert len(plant_bugs.PLANTS) == 9
    assert len({p.name for p in plant_bugs.PLANTS}) == 9


@pytest.mark.parametrize("plant", plant_bugs.PLANTS, ids=lambda p: p.name)
def test_every_anchor_is_in_the_source_once(plant, tmp_path):
    copy = tmp_path / plant.file
    copy.parent.mkdir(parents=True)
    copy.write_text((REPO / plant.file).read_text())
    assert plant_bugs.apply(tmp_path, plant) is None
    assert copy.read_text() != (REPO / plant.file).read_text()
    for test in plant.tests:
        assert (REPO / test).is_file(), test

"""gem.data: deterministic multi-domain set and the JSONL loader's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gem.config import DOMAINS
from gem.data import generate_dataset, load_jsonl, split
from gem.errors import DataError


def test_dataset_is_deterministic_and_balanced() -> None:
    a, b = generate_dataset(16, seed=3), generate_dataset(16, seed=3)
    assert a == b
    assert generate_dataset(16, seed=4) != a
    assert len(a) == 16 * len(DOMAINS)
    for i, s in enumerate(a):
        assert s.label == i % len(DOMAINS) and s.domain == DOMAINS[s.label]
    multi = [s.text for s in a if s.domain == "multilingual"]
    assert any(len(t.encode("utf-8")) > len(t) for t in multi)  # real multi-byte UTF-8


def test_split_keeps_all_domains() -> None:
    train, hold = split(generate_dataset(8), holdout_fraction=0.25)
    assert len(train) == 48 and len(hold) == 16
    assert {s.label for s in hold} == set(range(8))


def _write(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "user.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_load_jsonl_ok(tmp_path: Path) -> None:
    rec = {"text": "Le café est prêt", "label": 6, "domain": "multilingual"}
    p = _write(tmp_path, [json.dumps(rec), "", json.dumps({**rec, "label": 0})])
    samples = load_jsonl(p, num_classes=8)
    assert [s.label for s in samples] == [6, 0]
    assert samples[0].text == "Le café est prêt"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"label": 1, "domain": "law"}', "missing key 'text'"),
        ('{"text": "x", "domain": "law"}', "missing key 'label'"),
        ('{"text": "x", "label": 1}', "missing key 'domain'"),
        ('{"text": "x", "label": "1", "domain": "law"}', "key 'label' must be an integer"),
        ('{"text": "x", "label": true, "domain": "law"}', "key 'label' must be an integer"),
        ('{"text": 5, "label": 1, "domain": "law"}', "key 'text' must be a string"),
        ('{"text": "x", "label": 9, "domain": "law"}', "outside [0, 7]"),
        ('{"text": "x", "label": 1, "domain": "law"', "invalid JSON"),
        ('["text", 1]', "expected a JSON object"),
    ],
)
def test_load_jsonl_errors_name_file_line_key(tmp_path: Path, line: str, expected: str) -> None:
    good = json.dumps({"text": "ok", "label": 0, "domain": "law"})
    p = _write(tmp_path, [good, line])
    with pytest.raises(DataError) as exc:
        load_jsonl(p, num_classes=8)
    msg = str(exc.value)
    assert f"{p}:2:" in msg, msg
    assert expected in msg, msg


def test_load_jsonl_missing_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_jsonl(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no records"):
        load_jsonl(empty)

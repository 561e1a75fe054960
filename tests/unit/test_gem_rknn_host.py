"""gem/export/rknn.py without the toolkit: buckets, the converter environment's
discovery and its error, and the parser of the toolkit's per-op table (on rows
copied from rknn-toolkit2 2.5.0's own log of a GEM tiny build)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gem.errors import BuildError
from gem.export import rknn

# rknn-toolkit2 2.5.0, verbose build of a [1, 16] GEM tiny graph (fp16), columns cut
LOG = """\
=== gem-hil: bucket 16 ===
D RKNN: [03:19:02.418] ID   OpType             DataType Target InputShape          OutputShape
D RKNN: [03:19:02.418] -----------------------------------------------------------------------
D RKNN: [03:19:02.418] 0    InputOperator      INT64    CPU    \\                   (1,16)
D RKNN: [03:19:02.418] 1    Reshape            INT64    CPU    (1,16),(4)          (1,16,1,1)
D RKNN: [03:19:02.418] 4    Cast               INT8     NPU    (1,16,1,1)          (1,16,1,1)
D RKNN: [03:19:02.418] 5    Gather             FLOAT16  CPU    (260,64),(1,16)     (1,16,64)
D RKNN: [03:19:02.418] 6    ConvClip           FLOAT16  NPU    (1,16,1,1),(1,16,1,1) (1,1,1,1)
D RKNN: [03:19:02.418] 35   TopK               FLOAT16  CPU    (1,1,1,8),(1)       (1,1,1,2)
D RKNN: [03:19:02.418] 37   GatherElements     FLOAT16  CPU    (1,16,1,8),(1,16,1,2) (1,16,1,2)
D RKNN: [03:19:02.418] 39   Gather             FLOAT16  CPU    (8,64,1,64),(2)     (2,64,1,64)
D RKNN: [03:19:02.418] 12   Conv               FLOAT16  NPU    (1,64,1,16),(64,64,1,1) (1,64,1,16)
D RKNN: [03:19:02.418] 12   Conv               FLOAT16  NPU    (1,64,1,16),(64,64,1,1) (1,64,1,16)
D RKNN: [03:19:02.452] 112 Conv        head.weight                    FLOAT16   (8,64,1,1)   | 0x0
=== gem-hil: converted bucket 16 ===
=== gem-hil: bucket 32 ===
D RKNN: [03:19:09.001] 0    InputOperator      INT64    CPU    \\                   (1,32)
D RKNN: [03:19:09.001] 1    Conv               FLOAT16  NPU    (1,64,1,32),(64,64,1,1) (1,64,1,32)
"""


def test_buckets_stop_at_the_rknn_maximum():
    assert rknn.rknn_buckets(1024) == (16, 32, 64, 128)
    assert rknn.rknn_buckets(100) == (16, 32, 64, 100)
    assert rknn.rknn_file(64) == "model_seq_64.rknn"


def test_op_table_rows_are_parsed_per_bucket_once_each():
    tables = rknn.parse_op_tables(LOG)
    assert sorted(tables) == [16, 32]
    ops16 = [(o["op"], o["target"]) for o in tables[16]]
    # the duplicated row 12 once; the const-tensor table's row 112 is no op row
    assert ops16.count(("Conv", "NPU")) == 1 and len(ops16) == 9
    s = rknn.placement_summary(tables[16])
    assert s["ops_total"] == 8  # the InputOperator is no op
    assert (s["ops_npu"], s["ops_cpu"]) == (3, 5)
    assert s["cpu_op_names"] == ["Gather", "GatherElements", "Reshape", "TopK"]
    assert s["cpu_ops"].count("Gather") == 2
    assert rknn.placement_summary(tables[32])["ops_npu"] == 1


def test_a_missing_converter_environment_says_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GEM_HIL_RKNN_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(BuildError) as exc:
        rknn.converter_python()
    assert str(tmp_path / "nope" / "python") in str(exc.value)
    assert "scripts/setup-rknn.sh" in str(exc.value)
    assert rknn.toolkit_version() == "missing"  # the cache key still computes


def test_toolkit_version_is_read_without_starting_the_toolkit(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "lib" / "python3.11" / "site-packages" / "rknn_toolkit2-2.5.0.dist-info").mkdir(
        parents=True)
    monkeypatch.setenv("GEM_HIL_RKNN_PYTHON", str(venv / "bin" / "python"))
    assert rknn.toolkit_version() == "2.5.0"


def test_a_converter_that_fails_is_a_build_error_with_its_log(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'E RKNN: something broke'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GEM_HIL_RKNN_PYTHON", str(fake))
    with pytest.raises(BuildError) as exc:
        rknn.run_converter({"target": "rk3588", "quantize": False, "buckets": []},
                           tmp_path / "work", timeout_s=30)
    msg = str(exc.value)
    assert "exited with 3" in msg and "something broke" in msg
    assert Path(tmp_path / "work" / "rknn-toolkit.log").is_file()

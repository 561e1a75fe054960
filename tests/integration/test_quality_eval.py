"""Quality measured on the device (docs/quality.md): the tiny config trained on
the real corpus, adapted both ways (plain fine-tuning and adaptive knowledge
preservation), and the `eval` benchmark run on the local device and on an
emulated arm64 device (qemu-user-pi4). The record's F1, forgetting and
indices must be the ones computed from the predictions the device returned:
recomputed here from those predictions, checked against the host's own run
of the same model, and changed when one returned prediction is tampered with
on its way back from the device.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from gem import metrics as m
from harness.record import schema_errors
from tests.support.corpus import require_corpus
from tests.support.profiles import with_lenient_validity

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "firmware/qemu/bin/qemu-user-python"
PER_DOMAIN = 8
TRAIN_STEPS = 48
EVAL_TABLE = f"\n[eval]\nper_domain = {PER_DOMAIN}\nresamples = 300\n"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifact():
    """tiny-int8 trained on the real corpus (general, then adapted with knowledge
    preservation, as every build), fewer steps than the default to stay quick; in
    the artifact cache ($GEM_HIL_CACHE), so a re-run does not train again."""
    require_corpus()
    pytest.importorskip("torch")
    from gem.artifacts import build_artifact
    from harness.artifacts import load_artifact

    folder = build_artifact("tiny", "int8", train_steps=TRAIN_STEPS)
    return load_artifact(folder)


def _profile(tmp_path: Path, name: str, text: str):
    from harness.profiles import load_profile

    targets = tmp_path / "targets"
    targets.mkdir(exist_ok=True)
    (targets / f"{name}.toml").write_text(with_lenient_validity(text) + EVAL_TABLE)
    return load_profile(name, targets)


def _host_preds(artifact, record) -> list[int]:
    """The same model.onnx run by onnxruntime here, on the token ids pushed."""
    import onnxruntime as ort

    from gem.corpus import load_corpus
    from gem.tokenizer import encode

    holdout = load_corpus(seed=artifact.manifest["build"]["seed"]).holdout
    s = ort.InferenceSession(str(artifact.folder / "model.onnx"),
                             providers=["CPUExecutionProvider"])
    out = []
    for i in record["quality"]["examples"]["ids"]:
        ids = np.asarray([encode(holdout[i].text, max_len=1024)], dtype=np.int64)
        out.append(int(s.run(None, {"input_ids": ids})[0].argmax()))
    return out


def _check_recomputed(q: dict) -> None:
    """Every reported figure equals gem.metrics on the returned predictions."""
    ex = q["examples"]
    y, p, g, f, dom = (ex["labels"], ex["device_preds"], ex["general_preds"], ex["fp32_preds"],
                       ex["domains"])
    t = q["target_domain"]
    assert t == "domain-adaptive" and len(p) == q["n_examples"] == 8 * PER_DOMAIN
    per = m.per_domain_f1(y, p, dom)
    assert {d: v["value"] for d, v in q["f1"]["per_domain"].items()} == pytest.approx(per)
    assert q["f1"]["cross_domain"]["value"] == pytest.approx(m.cross_domain_f1(y, p, dom))
    assert q["generalization_gap"]["value"] == pytest.approx(m.generalization_gap(y, p, g, dom))
    before = m.cross_domain_f1(y, g, dom, exclude=t)
    after = m.cross_domain_f1(y, p, dom, exclude=t)
    assert q["forgetting"]["value"] == pytest.approx(m.forgetting(before, after))
    assert q["dsi"]["value"] == pytest.approx(m.domain_specialization_index(y, p, dom, t))
    cdtr = m.cross_domain_transfer_ratio(y, p, g, dom, t)
    assert (q["cdtr"]["value"] is None and math.isnan(cdtr)) or \
        q["cdtr"]["value"] == pytest.approx(cdtr)
    assert q["fp32_top1_agreement"]["value"] == pytest.approx(m.top1_agreement(p, f))
    nll = [tuple(r) for r in ex["device_nll"]]
    ppl = m.per_domain_perplexity(nll, dom)
    assert {d: v["value"] for d, v in q["perplexity"]["per_domain"].items()} == \
        pytest.approx(ppl)
    for key in ("generalization_gap", "forgetting", "dsi", "fp32_top1_agreement"):
        lo, hi = q[key]["ci95"]
        assert lo <= q[key]["value"] <= hi, (key, q[key])


def _run_eval(profile, artifact, reports: Path, tamper: bool = False) -> dict:
    from harness.bench import DeviceSession

    with DeviceSession(profile) as dev:
        if tamper:  # flip the first returned prediction on its way back from the device
            real_run = dev.transport.run

            def run(argv, *a, **kw):
                res = real_run(argv, *a, **kw)
                if "--eval-file" not in argv:
                    return res
                out = json.loads(res.stdout.strip().splitlines()[-1])
                out["eval"]["preds"][0] = (out["eval"]["preds"][0] + 1) % 8
                return dataclasses.replace(res, stdout=json.dumps(out) + "\n")

            dev.device.transport.run = run  # type: ignore[method-assign]
        return dev.run_benchmark(artifact, name="eval", report_dir=reports).record


def _check_device_record(rec: dict, artifact, emulated: bool, machine: str | None) -> None:
    assert schema_errors(rec) == []
    assert rec["benchmark"]["name"] == "eval" and rec["device"]["emulated"] is emulated
    if machine:
        assert rec["environment"]["machine"] == machine
    q = rec["quality"]
    _check_recomputed(q)
    # the predictions are the device's run of this artifact: the host's onnxruntime on the
    # same file and token ids agrees (int8 kernels differ across ISAs: nearly always)
    host = _host_preds(artifact, rec)
    agree = sum(a == b for a, b in zip(host, q["examples"]["device_preds"], strict=True))
    assert agree >= (len(host) if not emulated else 0.95 * len(host)), (agree, len(host))
    # quality budgets are gated on every device, emulated or not
    gated = {v["metric"]: v for v in rec["verdicts"]}
    assert gated["fp32_top1_agreement"]["verdict"] in ("pass", "fail", "inconclusive")
    assert gated["fp32_top1_agreement"]["measured"] == q["fp32_top1_agreement"]["value"]
    assert gated["decode_tokens_per_s"]["verdict"] == "recorded" if \
        "decode_tokens_per_s" in gated else True


def test_forgetting_both_ways_from_predictions() -> None:
    """Plain fine-tuning and knowledge preservation adapt the same general model
    with the same batches; every reported forgetting is recomputable from the
    kept predictions."""
    require_corpus()
    pytest.importorskip("torch")
    from gem.corpus import load_corpus
    from gem.forgetting import eval_subset, run_seed, summarize

    corpus = load_corpus(seed=0)
    holdout = eval_subset(corpus.holdout, 10)
    res = run_seed("tiny", 0, corpus.train, holdout, general_steps=24, adapt_steps=6,
                   targets=("healthcare", "domain-adaptive"))
    y, dom = res["labels"], res["domains"]
    for t, row in res["targets"].items():
        assert row["finetune"]["preds"] != row["kp"]["preds"]  # the teacher changed something
        for method in ("finetune", "kp"):
            r = row[method]
            before = m.cross_domain_f1(y, res["general_preds"], dom, exclude=t)
            after = m.cross_domain_f1(y, r["preds"], dom, exclude=t)
            assert r["forgetting"] == pytest.approx(m.forgetting(before, after))
            lo, hi = r["forgetting_example_ci95"]
            assert lo <= r["forgetting"] <= hi
    s = summarize([res])
    ft = np.mean([r["finetune"]["forgetting"] for r in res["targets"].values()])
    kp = np.mean([r["kp"]["forgetting"] for r in res["targets"].values()])
    assert s["forgetting"]["finetune"]["mean"] == pytest.approx(ft)
    assert s["reduction"]["mean"] == pytest.approx(1 - kp / ft)
    assert s["forgetting"]["kp"]["ci95"] == [None, None]  # one seed: no interval over seeds


def test_eval_on_the_local_device(artifact, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GEM_HIL_LOCAL_HOME", str(tmp_path / "home"))
    profile = _profile(tmp_path, "local", (REPO / "targets/local.toml").read_text())
    rec = _run_eval(profile, artifact, tmp_path / "reports")
    _check_device_record(rec, artifact, emulated=False, machine=None)
    # on the same CPU and runtime, the device's int8 run is the host's, bit for bit
    assert rec["quality"]["examples"]["device_preds"] == _host_preds(artifact, rec)

    # one prediction changed on its way back: the scores follow the device, not the host
    bad = _run_eval(profile, artifact, tmp_path / "reports2", tamper=True)
    _check_recomputed(bad["quality"])
    p0, p1 = rec["quality"]["examples"]["device_preds"], bad["quality"]["examples"]["device_preds"]
    assert p1[0] == (p0[0] + 1) % 8 and p1[1:] == p0[1:]
    assert bad["quality"]["f1"]["per_domain"] != rec["quality"]["f1"]["per_domain"]
    assert bad["quality"]["fp32_top1_agreement"]["value"] != \
        rec["quality"]["fp32_top1_agreement"]["value"]


def test_eval_on_emulated_arm64(artifact, tmp_path: Path, monkeypatch) -> None:
    """The same eval under qemu-user: the Pi 4 image's aarch64 Python, numpy and
    onnxruntime run the int8 artifact; quality budgets still gate (not timing)."""
    from harness.qemu.image import build_image, cached_image, missing_build_tools

    reason = None
    if shutil.which("qemu-aarch64-static") is None:
        reason = "qemu-aarch64-static is not installed (apt-get install qemu-user-static)"
    elif cached_image() is None and (missing_build_tools() or os.geteuid() != 0):
        reason = "no cached pi4 image and cannot build one here (gem-hil qemu build pi4)"
    if reason:
        pytest.skip(f"needs the qemu-user arm64 device: {reason}")
    image = build_image("pi4")
    monkeypatch.setenv("GEM_HIL_QEMU_USER_ROOT", str(image.root_dir))
    monkeypatch.setenv("GEM_HIL_LOCAL_HOME", str(tmp_path / "home"))
    text = (REPO / "targets/qemu-user-pi4.toml").read_text()
    text = text.replace('"../firmware/qemu/bin/qemu-user-python"', json.dumps(str(WRAPPER)))
    text = text.replace("max_duration_s = 20.0", "max_duration_s = 120.0")
    rec = _run_eval(_profile(tmp_path, "qemu-user-pi4", text), artifact, tmp_path / "reports")
    _check_device_record(rec, artifact, emulated=True, machine="aarch64")

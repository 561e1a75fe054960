"""gem.config: named configs, sizes from the roofline, clear errors."""

from __future__ import annotations

import pytest

from gem.config import DOMAINS, config_names, get_config


def test_unknown_config_lists_names() -> None:
    with pytest.raises(ValueError) as exc:
        get_config("huge")
    msg = str(exc.value)
    assert "'huge'" in msg and "tiny" in msg and "edge" in msg


def test_sizes_match_design() -> None:
    tiny, edge = get_config("tiny").param_counts(), get_config("edge").param_counts()
    assert tiny["total"] < 1_000_000
    assert 10_000_000 <= edge["total"] <= 30_000_000
    # DESIGN.md roofline: 4-6 M parameters active per token on a Pi 4.
    assert 4_000_000 <= edge["active_per_token"] <= 6_000_000
    assert edge["active_per_token"] < edge["total"] / 3  # routing sparsity is real


def test_configs_are_complete() -> None:
    assert {"tiny", "edge"} <= set(config_names())
    for name in config_names():
        cfg = get_config(name)
        assert cfg.max_len_tokens >= 256
        assert cfg.num_classes == len(DOMAINS) == 8
        assert cfg.vocab_size == 260 and cfg.pad_id == 256
        assert 0 < cfg.top_k < cfg.num_experts
        assert cfg.to_dict()["domains"] == list(DOMAINS)

"""What every format's build shares: the deterministic training run and the
manifest fields that describe the model rather than its file.

Each format's builder (build_onnx, build_tflite) trains the same model from
the same seed, then exports, checks and describes it its own way; keeping the
training and the model facts here means a second format cannot drift to a
different model or a different description of the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gem.config import GemConfig, get_config
from gem.data import Sample, generate_dataset, split
from gem.export import BuildProgress
from gem.tokenizer import BOS_ID, encode_batch

DATASET_PER_DOMAIN = 64


@dataclass
class Trained:
    """A trained GemModel with the data it saw and what it scored."""

    cfg: GemConfig
    net: Any  # GemModel (torch)
    data: list[Sample]
    train_set: list[Sample]
    holdout: list[Sample]
    train_accuracy: float
    holdout_accuracy: float
    train_seconds: float

    def holdout_ids(self) -> np.ndarray:
        """The hold-out texts as one right-padded int64 batch."""
        ids, _ = encode_batch([s.text for s in self.holdout], max_len=self.cfg.max_len_tokens)
        return ids


def train_model(model: str, seed: int, train_steps: int,
                report: BuildProgress) -> Trained:
    """Build and train ``model`` deterministically from ``seed``."""
    import torch

    from gem.model import build_model
    from gem.train import TrainOptions, accuracy, train

    cfg = get_config(model)
    torch.manual_seed(seed)
    net = build_model(cfg, seed=seed)
    data = generate_dataset(n_per_domain=DATASET_PER_DOMAIN, seed=seed)
    train_set, holdout = split(data)
    opts = TrainOptions(
        steps=train_steps, seed=seed, lr=cfg.train_lr, batch_size=cfg.train_batch_size
    )
    report("train", 0, train_steps)
    trained = train(net, train_set, opts, on_step=lambda done, total: report("train", done, total))
    return Trained(cfg, net, data, train_set, holdout, accuracy(net, train_set),
                   accuracy(net, holdout), trained.seconds)


def model_fields(t: Trained) -> dict[str, Any]:
    """The manifest's description of the model (same for every format)."""
    cfg = t.cfg
    counts = t.net.param_counts()
    return {
        "params_total": counts["total"],
        "params_active_per_token": cfg.param_counts()["active_per_token"],
        "params_by_group": {k: v for k, v in counts.items() if k != "total"},
        "num_classes": cfg.num_classes,
        "classes": list(cfg.domains),
        "max_len_tokens": cfg.max_len_tokens,
        "vocab_size": cfg.vocab_size,
        "pad_id": cfg.pad_id,
        "bos_id": BOS_ID,
        "routing": {
            "num_experts": cfg.num_experts,
            "experts_per_domain": cfg.experts_per_domain,
            "top_k": cfg.top_k,
            "dtr_capacity": cfg.dtr_capacity,
            "dtr_threshold": cfg.dtr_threshold,
        },
    }


def train_fields(t: Trained) -> dict[str, Any]:
    """The build's training facts (manifest ``build``)."""
    return {"train_accuracy": t.train_accuracy, "holdout_accuracy": t.holdout_accuracy,
            "train_seconds": round(t.train_seconds, 3)}

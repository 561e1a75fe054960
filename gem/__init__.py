"""GEM (Generalized Edge Model): the model under test and its artifact pipeline.

gem/ knows nothing of devices. Importing ``gem`` (and gem.config, gem.errors,
gem.tokenizer, gem.data, gem.quantization, gem.artifacts) does not import torch,
so a device-only run with a cached artifact never pays for it; gem.model,
gem.train, gem.distillation and the export backends do.

Entry points: ``gem.artifacts.build_artifact(model, variant, fmt)`` returns an
artifact folder (manifest.json, reference.json, model files);
``gem.config.get_config(name)``; ``gem.model.build_model(cfg, seed)``.
See docs/gem.md for the definitions of DTR, SCAR, hybrid quantization and the
knowledge preservation loss.
"""

from __future__ import annotations

from gem.config import DOMAINS, GemConfig, config_names, get_config
from gem.errors import ArtifactCorruptError, BuildError, DataError, GemError

__version__ = "0.1.0"

__all__ = [
    "DOMAINS",
    "ArtifactCorruptError",
    "BuildError",
    "DataError",
    "GemConfig",
    "GemError",
    "config_names",
    "get_config",
]

"""sae_hub: load, convert, train, splice and share sparse autoencoders through the Hugging Face Hub."""

from __future__ import annotations

__version__ = "0.1.0"

from sae_hub.config import Provenance, SAEConfig
from sae_hub.registry import get_release, list_releases, resolve, search
from sae_hub.sae import SAE, SparseCode
from sae_hub.splice import splice  # eager: the function must shadow its submodule's name
from sae_hub.train import train  # eager, for the same reason: `sae_hub.train(cfg)` is the function

# name -> module: imported on first access, so `import sae_hub` never imports transformers
_LAZY = {
    "Edit": "sae_hub.steering",
    "Steering": "sae_hub.steering",
    "TrainConfig": "sae_hub.train.config",
    "evaluate": "sae_hub.eval",
    "feature_activations": "sae_hub.inspect",
    "load_model": "sae_hub.models",
    "logit_lens": "sae_hub.inspect",
    "resolve_hook": "sae_hub.hooks",
    "top_features": "sae_hub.inspect",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sae_hub' has no attribute {name!r}")


__all__ = [
    "Edit",
    "Provenance",
    "SAE",
    "SAEConfig",
    "SparseCode",
    "Steering",
    "TrainConfig",
    "__version__",
    "evaluate",
    "feature_activations",
    "get_release",
    "list_releases",
    "load_model",
    "logit_lens",
    "resolve",
    "resolve_hook",
    "search",
    "splice",
    "top_features",
    "train",
]

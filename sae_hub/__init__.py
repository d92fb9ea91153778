"""sae_hub: load, convert, train, splice and share sparse autoencoders through the Hugging Face Hub."""

from __future__ import annotations

__version__ = "0.1.0"

from sae_hub.config import Provenance, SAEConfig
from sae_hub.sae import SAE, SparseCode

__all__ = sorted(
    [
        "SAE",
        "Provenance",
        "SAEConfig",
        "SparseCode",
        "__version__",
    ]
)

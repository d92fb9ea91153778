"""Settings read from the environment, once, at import; the only module that reads `os.environ`.

Offline mode is huggingface_hub's own `HF_HUB_OFFLINE` (which also honours `TRANSFORMERS_OFFLINE`).
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import constants as hf_constants


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in {"1", "ON", "YES", "TRUE"}


HF_HUB_OFFLINE: bool = hf_constants.HF_HUB_OFFLINE
"""True when huggingface_hub is in offline mode; sae_hub then reads only the cache."""

SAE_HUB_CACHE: Path = Path(os.environ.get("SAE_HUB_CACHE") or Path(hf_constants.HF_HOME) / "sae_hub")
"""Where converted (native) copies of foreign-format SAEs and demo artefacts are kept."""

SAE_HUB_DISABLE_CONVERSION_CACHE: bool = _is_true(os.environ.get("SAE_HUB_DISABLE_CONVERSION_CACHE"))
"""Skip writing native copies of converted SAEs (each load converts again)."""

SAE_HUB_OPENAI_BASE_URL: str = (
    os.environ.get("SAE_HUB_OPENAI_BASE_URL")
    or "https://openaipublic.blob.core.windows.net/sparse-autoencoder"
)
"""Base URL of OpenAI's original GPT-2 SAE `.pt` files (a mirror or a test server may stand in)."""

"""Test-wide setup: an isolated HF cache and fake token, set before huggingface_hub is imported."""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="sae_hub_tests_")
os.environ["HF_HOME"] = os.path.join(_HOME, "hf_home")
os.environ["SAE_HUB_CACHE"] = os.path.join(_HOME, "sae_hub_cache")
os.environ["HF_TOKEN"] = "hf_fake_test_token"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip gpu tests without CUDA and network tests always (CI has no Hub)."""
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
        if "network" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="talks to the real Hub; not in the default run"))

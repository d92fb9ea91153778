"""Test-wide setup: an isolated HF cache and fake token, set before huggingface_hub is imported."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="sae_hub_tests_")
os.environ["HF_HOME"] = os.path.join(_HOME, "hf_home")
os.environ["SAE_HUB_CACHE"] = os.path.join(_HOME, "sae_hub_cache")
os.environ["HF_TOKEN"] = "hf_fake_test_token"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)

# The loopback Hub starts at import so HF_ENDPOINT is set before huggingface_hub reads it.
from hub_server import HubServer  # noqa: E402  (stdlib only)

HUB = HubServer().start()
os.environ["HF_ENDPOINT"] = HUB.url
os.environ["SAE_HUB_OPENAI_BASE_URL"] = f"{HUB.url}/openai"

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip gpu tests without CUDA and network tests always (CI has no Hub)."""
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
        if "network" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="talks to the real Hub; not in the default run"))


# ---- loopback Hub fixtures ---------------------------------------------------------------------


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test on one torch thread (training runs compare bitwise; threads change reduction order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def hub_server() -> HubServer:
    """The session's Hub-protocol server on 127.0.0.1 (HF_ENDPOINT points at it)."""
    return HUB


def repo_files(files: Mapping[str, bytes | str | os.PathLike[str]]) -> dict[str, bytes]:
    """Expand {path in repo: bytes | local file | local folder} into {path: bytes}."""
    out: dict[str, bytes] = {}
    for prefix, value in files.items():
        if isinstance(value, bytes):
            out[prefix] = value
            continue
        local = Path(value)
        if local.is_dir():
            for f in sorted(local.rglob("*")):
                if f.is_file():
                    out[f"{prefix.strip('/')}/{f.relative_to(local).as_posix()}".lstrip("/")] = f.read_bytes()
        else:
            out[prefix] = local.read_bytes()
    return out


@pytest.fixture
def make_repo(hub_server: HubServer) -> Iterator[Callable[..., str]]:
    """Create (or add a commit to) a repo on the loopback Hub; returns the new head commit sha.

    `make_repo("org/name", {"layer_0": folder, "README.md": b"..."}, branch="main", gated=False)`.
    Repos it created are removed when the test ends, so every test starts from the same Hub.
    """
    created: list[str] = []

    def make(
        repo_id: str,
        files: Mapping[str, bytes | str | os.PathLike[str]],
        *,
        branch: str = "main",
        gated: bool = False,
    ) -> str:
        content = repo_files(files)
        with hub_server.lock:
            if ("model", repo_id) not in hub_server.repos:
                hub_server.create_repo(repo_id, gated=gated)
                created.append(repo_id)
            return hub_server.commit(repo_id, content, branch=branch)

    yield make
    with hub_server.lock:
        for repo_id in created:
            hub_server.repos.pop(("model", repo_id), None)

"""Loading through a misbehaving Hub: retries where huggingface_hub retries, typed errors naming the repo,
revision or file otherwise, never a half-written file in the cache, and zero requests offline."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx2
import huggingface_hub.constants as hf_constants
import numpy as np
import pytest
import torch
from faults import fail, injected, short_body, stall
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from sae_hub import SAE, SAEConfig
from sae_hub.cli import main
from sae_hub.errors import HubTimeoutError, SaeFilesMissingError
from sae_hub.hub import inspect_remote

D_IN, D_SAE = 8, 32
WEIGHTS = "sae/model.safetensors"


def saved(root: Path, seed: int) -> tuple[Path, dict[str, torch.Tensor]]:
    """A native ReLU SAE folder with seeded weights."""
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g),
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),
        "b_dec": torch.randn(D_IN, generator=g),
    }
    folder = root / f"sae_{seed}"
    SAE.from_tensors(SAEConfig(d_in=D_IN, d_sae=D_SAE), tensors).save_pretrained(folder)
    return folder, tensors


def same(sae: SAE, tensors: dict[str, torch.Tensor]) -> None:
    got = sae.state_tensors()
    assert got.keys() == tensors.keys()
    for name, t in tensors.items():
        assert torch.equal(got[name], t), name


@pytest.fixture
def repo(make_repo, tmp_path, request):
    """A fresh repo with one native SAE in `sae/`, and a fresh HF cache; (repo_id, sha, tensors, cache)."""
    repo_id = f"faults/{request.node.name[:60].replace('[', '-').replace(']', '')}"
    folder, tensors = saved(tmp_path, 7)
    sha = make_repo(repo_id, {"sae": folder})
    return repo_id, sha, tensors, tmp_path / "hf"


def cached_files(cache: Path) -> list[str]:
    """Every file name under the HF cache's snapshots (what a later load would trust)."""
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("snapshots/**/*") if p.is_file())


def incomplete(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.incomplete"))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def statuses(hub, needle: str, method: str | None = None) -> list[int]:
    return [r.status for r in hub.requests_matching(needle, method)]


# ---- retried faults ------------------------------------------------------------------------------


def test_503_on_file_metadata_is_retried(repo, hub_server):
    repo_id, _, tensors, cache = repo
    hub_server.clear_log()
    with injected(hub_server, fail(f"/{repo_id}/resolve/", 503, method="HEAD")):
        same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)
    heads = statuses(hub_server, f"/{repo_id}/resolve/", "HEAD")
    assert heads.count(503) == 1
    assert heads[-1] == 200


def test_500_on_tree_listing_is_retried(repo, hub_server):
    repo_id, _, tensors, cache = repo
    hub_server.clear_log()
    with injected(hub_server, fail(f"/api/models/{repo_id}/tree/", 500)):
        same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)
    assert statuses(hub_server, f"/api/models/{repo_id}/tree/") == [500, 200]


def test_429_with_retry_after_is_honoured(repo, hub_server):
    repo_id, _, tensors, cache = repo
    hub_server.clear_log()
    fault = fail(f"/{repo_id}/resolve/", 429, method="GET", headers={"Retry-After": "0"})
    with injected(hub_server, fault):
        same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)
    assert 429 in statuses(hub_server, f"/{repo_id}/resolve/", "GET")


def test_stalled_download_times_out_and_resumes(repo, hub_server, monkeypatch):
    repo_id, _, tensors, cache = repo
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)  # read at call time by http_get
    hub_server.clear_log()
    with injected(hub_server, stall(f"/{repo_id}/resolve/", 2.5, method="GET")):
        same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)
    assert incomplete(cache) == []


def test_body_cut_short_is_downloaded_again(repo, hub_server):
    repo_id, _, tensors, cache = repo
    hub_server.clear_log()
    with injected(hub_server, short_body(hub_server, repo_id, WEIGHTS, keep=0.4)):
        same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)
    gets = hub_server.requests_matching(WEIGHTS, "GET")
    assert len(gets) == 2
    assert gets[0].bytes_sent < gets[1].bytes_sent
    assert incomplete(cache) == []


# ---- faults that end in an error, and leave nothing a later load would trust ---------------------


def test_body_cut_short_for_good_leaves_no_cached_file(repo, hub_server):
    repo_id, sha, tensors, cache = repo
    faults = (short_body(hub_server, repo_id, WEIGHTS, keep=0.4), fail(WEIGHTS, 500, method="GET", times=99))
    with injected(hub_server, *faults), pytest.raises(HfHubHTTPError) as info:
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    assert WEIGHTS in str(info.value)
    assert f"snapshots/{sha}/{WEIGHTS}" not in "\n".join(cached_files(cache))
    with pytest.raises(LocalEntryNotFoundError, match="sae-hub download"):
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache, local_files_only=True)
    same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)  # the partial blob is resumed


def test_content_length_shorter_than_the_file_is_a_consistency_error(repo, hub_server):
    repo_id, sha, tensors, cache = repo
    lying = short_body(hub_server, repo_id, WEIGHTS, keep=0.5, claim="short")
    consistency = r"Consistency check failed.*model\.safetensors"
    with injected(hub_server, lying), pytest.raises(OSError, match=consistency):
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    assert f"snapshots/{sha}/{WEIGHTS}" not in "\n".join(cached_files(cache))
    same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)


def test_500_on_file_download_is_an_http_error_naming_the_file(repo, hub_server):
    repo_id, sha, tensors, cache = repo
    with injected(hub_server, fail(WEIGHTS, 500, method="GET")), pytest.raises(HfHubHTTPError) as info:
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    assert info.value.response.status_code == 500
    assert repo_id in str(info.value)
    assert WEIGHTS in str(info.value)
    assert f"snapshots/{sha}/{WEIGHTS}" not in "\n".join(cached_files(cache))
    same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)


def test_503_on_revision_info_names_the_repo_then_falls_back_to_the_cache(repo, hub_server):
    repo_id, sha, tensors, cache = repo
    down = fail(f"/api/models/{repo_id}/revision/", 503, times=99)
    with injected(hub_server, down), pytest.raises(HfHubHTTPError) as info:
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    assert info.value.response.status_code == 503
    assert repo_id in str(info.value)
    same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)
    with injected(hub_server, down):  # warm cache: the cached commit of `main` is used, with a warning
        sae = SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    same(sae, tensors)
    assert sae.cfg.provenance.revision == sha


def test_stalled_revision_info_times_out_with_an_error_naming_the_repo(repo, hub_server, monkeypatch):
    repo_id, _, _, cache = repo
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 1)
    silent = stall(f"/api/models/{repo_id}/revision/", 2.5, times=99)
    with injected(hub_server, silent), pytest.raises(LocalEntryNotFoundError) as info:
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    assert repo_id in str(info.value)
    assert "main" in str(info.value)


def test_stalled_revision_info_with_a_warm_cache_uses_the_cached_commit(repo, hub_server, monkeypatch):
    repo_id, sha, tensors, cache = repo
    SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 1)
    with injected(hub_server, stall(f"/api/models/{repo_id}/revision/", 2.5, times=99)):
        sae = SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    same(sae, tensors)
    assert sae.cfg.provenance.revision == sha


def test_stalled_tree_listing_times_out_and_is_retried(repo, hub_server, monkeypatch):
    repo_id, _, tensors, cache = repo
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 1)
    hub_server.clear_log()
    start = time.monotonic()
    with injected(hub_server, stall(f"/api/models/{repo_id}/tree/", 30)):
        same(SAE.from_pretrained(repo_id, "sae", cache_dir=cache), tensors)
    assert time.monotonic() - start < 10  # the 1 s timeout ended the try, not the server's 30 s silence
    assert len(hub_server.requests_matching(f"/api/models/{repo_id}/tree/")) == 2


# A listing that never answers costs huggingface_hub's retries: 6 tries of 1 s plus 23 s of backoff.
@pytest.mark.slow
def test_silent_tree_listing_times_out_with_an_error_naming_the_repo(repo, hub_server, monkeypatch, capsys):
    repo_id, sha, _, cache = repo
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 1)
    start = time.monotonic()
    silent = stall(f"/api/models/{repo_id}/tree/", 60, times=99)
    with injected(hub_server, silent), pytest.raises(LocalEntryNotFoundError) as info:
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    assert time.monotonic() - start < 45
    with injected(hub_server, silent):  # `sae-hub info` too: a typed error naming the repo, not a traceback
        assert main(["info", repo_id, "sae"]) == 2
    assert f"Timed out listing the files of {repo_id}@{sha}" in capsys.readouterr().err
    assert isinstance(info.value.__cause__, httpx2.TimeoutException)
    assert f"{repo_id}@{sha}:sae" in str(info.value)
    assert "list the files" in str(info.value)
    assert cached_files(cache) == []


@pytest.mark.slow
def test_silent_hub_api_with_a_warm_cache_uses_the_cached_commit_and_files(repo, hub_server, monkeypatch):
    repo_id, sha, tensors, cache = repo
    SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 1)
    hub_server.clear_log()
    start = time.monotonic()
    with injected(hub_server, stall(f"/api/models/{repo_id}/", 60, times=99)):  # revision and tree requests
        sae = SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    assert time.monotonic() - start < 45
    same(sae, tensors)
    assert sae.cfg.provenance.revision == sha
    assert hub_server.requests_matching(f"/api/models/{repo_id}/tree/")
    assert hub_server.requests_matching(f"/{repo_id}/resolve/") == []


@pytest.mark.parametrize("layout", ["safetensors", "npz"])
def test_stalled_ranged_read_in_info_times_out_with_an_error_naming_the_file(
    repo, make_repo, hub_server, monkeypatch, capsys, layout
):
    repo_id, sha, tensors, _ = repo
    folder, weights = "sae", WEIGHTS
    if layout == "npz":  # zipfile reads the archive through the same ranged reads, and catches OSErrors
        folder, weights = "npz", "npz/params.npz"
        sha = make_repo(repo_id, {weights: npz_bytes({k: t.numpy() for k, t in tensors.items()})})
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)  # read per request by RemoteFile
    hub_server.clear_log()
    start = time.monotonic()
    with injected(hub_server, stall(weights, 30, method="GET", times=99)):
        with pytest.raises(HubTimeoutError) as info:
            inspect_remote(repo_id, folder)
        assert main(["info", repo_id, folder]) == 2
    assert time.monotonic() - start < 10  # two 1 s timeouts, not the server's 30 s silence
    assert isinstance(info.value.__cause__, httpx2.TimeoutException)
    shown = capsys.readouterr().err
    for message in (str(info.value), shown):
        assert f"{repo_id}@{sha}/{weights}" in message
        assert "Timed out after 1 s reading bytes 0-" in message
    assert all(r.range for r in hub_server.requests_matching(weights, "GET"))


@pytest.mark.parametrize("status", [401, 403])
def test_gated_repo_refusal_is_a_gated_error(make_repo, tmp_path, status, hub_server, request):
    repo_id = f"faults/gated-{status}"
    folder, _ = saved(tmp_path, 1)
    make_repo(repo_id, {"sae": folder})
    fault = fail(f"/{repo_id}/resolve/", status, code="GatedRepo", times=99)
    with injected(hub_server, fault), pytest.raises(GatedRepoError) as info:
        SAE.from_pretrained(repo_id, "sae", cache_dir=tmp_path / "hf")
    assert repo_id in str(info.value)
    assert cached_files(tmp_path / "hf") == []


def test_401_without_gating_is_repository_not_found(repo, hub_server):
    repo_id, _, _, cache = repo
    fault = fail(f"/api/models/{repo_id}/revision/", 401, code="RepoNotFound")
    with injected(hub_server, fault), pytest.raises(RepositoryNotFoundError) as info:
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    assert repo_id in str(info.value)


@pytest.mark.parametrize(
    ("name", "sae_id", "revision", "error", "needle"),
    [
        ("faults/no-such-repo", "sae", None, RepositoryNotFoundError, "faults/no-such-repo"),
        (None, "sae", "no-such-branch", RevisionNotFoundError, "no-such-branch"),
        (None, "sae", "0" * 40, RevisionNotFoundError, "0" * 40),
        (None, "nope", None, SaeFilesMissingError, "nope"),
    ],
    ids=["repo", "branch", "commit", "folder"],
)
def test_404s_name_what_is_missing(repo, name, sae_id, revision, error, needle):
    repo_id, _, _, cache = repo
    with pytest.raises(error) as info:
        SAE.from_pretrained(name or repo_id, sae_id, revision=revision, cache_dir=cache)
    assert needle in str(info.value)


def test_file_deleted_between_listing_and_download_names_the_file(repo, hub_server):
    repo_id, _, _, cache = repo
    fault = fail(WEIGHTS, 404, code="EntryNotFound", times=99)
    with injected(hub_server, fault), pytest.raises(HfHubHTTPError) as info:
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    assert WEIGHTS in str(info.value)


def test_warm_cache_offline_after_faults_makes_zero_requests(repo, hub_server, monkeypatch):
    repo_id, sha, tensors, cache = repo
    with injected(hub_server, short_body(hub_server, repo_id, WEIGHTS, keep=0.3)):
        SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    hub_server.clear_log()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # the client reads the constant at call time
    sae = SAE.from_pretrained(repo_id, "sae", cache_dir=cache)
    same(sae, tensors)
    assert sae.cfg.provenance.revision == sha
    assert hub_server.log == []

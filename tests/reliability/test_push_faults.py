"""Pushing through faults: a failed multi-SAE push leaves the repo at its previous commit and a retry
lands as one commit; a push racing another writer is refused (PushConflictError) without touching their
files, and pushing again adds ours on top of theirs."""

from __future__ import annotations

import json

import pytest
import torch
from faults import fail, injected
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from sae_hub import SAE, SAEConfig
from sae_hub.errors import PushConflictError
from sae_hub.push import push_run, push_sae


def sae(seed: int) -> SAE:
    out = SAE(SAEConfig(d_in=8, d_sae=16, architecture="topk", k=2))
    out.reset_parameters(seed=seed)
    return out


def head(hub, repo_id: str) -> str:
    return hub.head(repo_id)


def n_commits(hub, repo_id: str) -> int:
    return len(hub.repos[("model", repo_id)].commits)


def files_at(hub, repo_id: str, sha: str) -> dict[str, bytes]:
    return dict(hub.repos[("model", repo_id)].commits[sha].files)


def manifest(hub, repo_id: str) -> list[str]:
    return sorted(json.loads(files_at(hub, repo_id, head(hub, repo_id))["config.json"])["saes"])


def equal(a: SAE, b: SAE) -> None:
    ta, tb = a.state_tensors(), b.state_tensors()
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name


def drop_mid_body(repo_id: str):
    """Read half of the commit request's body, then hang up without answering (a connection lost mid-upload)."""

    def fault(request) -> bool:
        if request.method != "POST" or f"/api/models/{repo_id}/commit/" not in request.path:
            return False
        length = int(request.headers.get("Content-Length") or 0)
        request.handler.rfile.read(length // 2)
        request.handler.close_connection = True
        return True

    return fault


@pytest.mark.parametrize(
    "where",
    ["preupload-500", "commit-500", "commit-connection-lost"],
)
def test_failed_multi_sae_push_leaves_previous_commit_and_retry_is_one_commit(hub_server, where):
    repo_id = f"pushfault/{where}"
    push_run({"layer_0": sae(0)}, repo_id)
    before, count = head(hub_server, repo_id), n_commits(hub_server, repo_id)
    snapshot = files_at(hub_server, repo_id, before)
    fault = {
        "preupload-500": fail(f"/api/models/{repo_id}/preupload/", 500, times=99),
        "commit-500": fail(f"/api/models/{repo_id}/commit/", 500, times=99, method="POST"),
        "commit-connection-lost": drop_mid_body(repo_id),
    }[where]
    new = {"layer_1": sae(1), "layer_2": sae(2), "layer_3": sae(3)}
    with injected(hub_server, fault), pytest.raises(Exception) as info:  # noqa: PT011 (HTTP or transport error)
        push_run(new, repo_id)
    assert isinstance(info.value, HfHubHTTPError) or "disconnect" in str(info.value).lower()
    assert head(hub_server, repo_id) == before
    assert n_commits(hub_server, repo_id) == count
    assert files_at(hub_server, repo_id, before) == snapshot
    push_run(new, repo_id)  # the retry
    assert n_commits(hub_server, repo_id) == count + 1
    assert hub_server.repos[("model", repo_id)].commits[head(hub_server, repo_id)].parent == before
    assert manifest(hub_server, repo_id) == ["layer_0", "layer_1", "layer_2", "layer_3"]
    equal(SAE.from_pretrained(repo_id, "layer_2"), new["layer_2"])


def test_push_racing_another_writer_keeps_their_files_and_push_again_lands_on_top(hub_server):
    repo_id = "pushfault/race"
    push_run({"layer_0": sae(0)}, repo_id)
    theirs = sae(10)

    def other_writer(request) -> bool:  # another client pushes its own SAE between our read and our commit
        if "/preupload/" in request.path and other_writer in hub_server.faults:
            hub_server.faults.remove(other_writer)
            push_sae(theirs, repo_id, path_in_repo="their_sae")
        return False

    with injected(hub_server, other_writer), pytest.raises(PushConflictError) as info:
        push_sae(sae(1), repo_id, path_in_repo="layer_1")
    message = str(info.value)
    assert repo_id in message
    assert "Push again" in message
    assert info.value.response.status_code == 412
    assert manifest(hub_server, repo_id) == ["layer_0", "their_sae"]  # theirs landed, ours did not
    files = HfApi().list_repo_files(repo_id)
    assert "their_sae/model.safetensors" in files
    assert not any(f.startswith("layer_1/") for f in files)
    push_sae(sae(1), repo_id, path_in_repo="layer_1")
    assert manifest(hub_server, repo_id) == ["layer_0", "layer_1", "their_sae"]
    equal(SAE.from_pretrained(repo_id, "their_sae"), theirs)
    equal(SAE.from_pretrained(repo_id, "layer_1"), sae(1))
    card = files_at(hub_server, repo_id, head(hub_server, repo_id))["README.md"].decode()
    assert "their_sae" in card
    assert "layer_1" in card

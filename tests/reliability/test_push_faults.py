"""Pushing through faults: a failed multi-SAE push (an error, or a head read that times out) leaves the
repo at its previous commit and a retry lands as one commit; a push racing another writer is refused
(PushConflictError) without touching their files, and pushing again adds ours on top of theirs."""

from __future__ import annotations

import base64
import json
import time

import huggingface_hub.constants as hf_constants
import pytest
import torch
from faults import fail, injected, stall
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from sae_hub import SAE, SAEConfig
from sae_hub.errors import HubTimeoutError, PushConflictError
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


def drop_mid_body(repo_id: str, *, apply: bool = False):
    """Hang up on the first commit request without answering: after reading half its body (a connection
    lost mid-upload) or, with `apply`, after committing it (the commit landed but its answer was lost)."""
    armed = [True]

    def fault(request) -> bool:
        if not armed[0] or request.method != "POST" or f"/api/models/{repo_id}/commit/" not in request.path:
            return False
        armed[0] = False
        length = int(request.headers.get("Content-Length") or 0)
        if not apply:
            request.handler.rfile.read(length // 2)
        else:
            lines = [json.loads(x) for x in request.handler.rfile.read(length).splitlines() if x.strip()]
            added = {
                x["value"]["path"]: base64.b64decode(x["value"]["content"])
                for x in lines
                if x["key"] == "file"
            }
            request.handler.hub.commit(repo_id, added)
        request.handler.close_connection = True
        return True

    return fault


FAULTS = {
    # retried by huggingface_hub: the push succeeds as exactly one commit
    "commit-500-once": (lambda r: fail(f"/api/models/{r}/commit/", 500, method="POST"), None),
    "commit-connection-lost-once": (drop_mid_body, None),
    "commit-landed-answer-lost": (lambda r: drop_mid_body(r, apply=True), None),
    # not retried: the push fails and the repo stays at its previous commit
    "preupload-refused": (lambda r: fail(f"/api/models/{r}/preupload/", 403, times=99), HfHubHTTPError),
    "commit-refused": (
        lambda r: fail(f"/api/models/{r}/commit/", 422, times=99, method="POST"),
        HfHubHTTPError,
    ),
    # the head read (before anything is staged or uploaded) gets no answer: HF_HUB_ETAG_TIMEOUT ends it
    "head-read-stalls": (
        lambda r: stall(f"/api/models/{r}", 30, times=99, method="GET"),  # repo_info; no other GET under it
        HubTimeoutError,
    ),
}


@pytest.mark.parametrize("where", list(FAULTS))
def test_multi_sae_push_through_a_fault_is_one_commit_or_nothing(hub_server, monkeypatch, where):
    repo_id = f"pushfault/{where}"
    push_run({"layer_0": sae(0)}, repo_id)
    before, count = head(hub_server, repo_id), n_commits(hub_server, repo_id)
    snapshot = files_at(hub_server, repo_id, before)
    make_fault, error = FAULTS[where]
    new = {"layer_1": sae(1), "layer_2": sae(2), "layer_3": sae(3)}
    if error is HubTimeoutError:  # a stall: the head read's timeout, read at call time, ends it
        monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 1)
    with injected(hub_server, make_fault(repo_id)):
        if error is not None:
            start = time.monotonic()
            with pytest.raises(error) as info:
                push_run(new, repo_id)
            assert time.monotonic() - start < 10  # the stall: one 1 s timeout, not the server's 30 s silence
            assert repo_id in str(info.value)
            assert head(hub_server, repo_id) == before
            assert n_commits(hub_server, repo_id) == count
            assert files_at(hub_server, repo_id, before) == snapshot
        else:
            url = push_run(new, repo_id)
            assert url.endswith(head(hub_server, repo_id))
    if error is not None:
        push_run(new, repo_id)  # the retry, once the fault is gone
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

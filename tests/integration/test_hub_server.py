"""The loopback Hub speaks the protocol the real huggingface_hub client expects (download and upload)."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils import get_session, hf_raise_for_status


def test_upload_commits_and_stale_parent_is_refused(hub_server, tmp_path):
    api = HfApi()
    url = api.create_repo("tester/server-upload")
    assert str(url).endswith("/tester/server-upload")
    assert str(api.create_repo("tester/server-upload", exist_ok=True)) == str(url)  # 409 body carries the url
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"a" * 3000)
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# hi\n")
    first = api.upload_folder(repo_id="tester/server-upload", folder_path=tmp_path, commit_message="one")
    assert sorted(api.list_repo_files("tester/server-upload")) == [".gitattributes", "README.md", "sub/a.bin"]
    second = api.create_commit(
        "tester/server-upload",
        [CommitOperationAdd("b.txt", b"b")],
        commit_message="two",
        parent_commit=first.oid,
    )
    assert second.oid != first.oid
    assert hub_server.repos[("model", "tester/server-upload")].commits[second.oid].parent == first.oid
    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(
            "tester/server-upload",
            [CommitOperationAdd("c.txt", b"c")],
            commit_message="stale",
            parent_commit=first.oid,
        )
    assert info.value.response.status_code == 412
    assert api.model_info("tester/server-upload").sha == second.oid
    assert api.model_info("tester/server-upload", revision=first.oid).sha == first.oid


def test_downloads_snapshot_patterns_and_missing_entries(hub_server, tmp_path):
    hub_server.create_repo("tester/server-dl", {"x/1.bin": b"1" * 10, "x/2.bin": b"2" * 20, "y/3.bin": b"3"})
    path = hf_hub_download("tester/server-dl", "x/2.bin", cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"2" * 20
    folder = snapshot_download("tester/server-dl", allow_patterns=["x/*"], cache_dir=tmp_path / "snap")
    assert sorted(p.name for p in (tmp_path / "snap").rglob("*.bin")) == ["1.bin", "2.bin"]
    assert folder.endswith(hub_server.head("tester/server-dl"))
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("tester/server-dl", "x/none.bin", cache_dir=tmp_path)
    assert not HfApi().file_exists("tester/server-dl", "x/none.bin")


def test_range_requests_and_tree_pagination(hub_server):
    files = {f"many/{i:04d}.txt": b"%d" % i for i in range(1005)}
    hub_server.create_repo("tester/server-pages", {"blob.bin": bytes(range(256)) * 4, **files})
    url = hf_hub_url("tester/server-pages", "blob.bin")
    response = get_session().get(url, headers={"Range": "bytes=10-19"})
    hf_raise_for_status(response)
    assert response.status_code == 206
    assert response.content == bytes(range(10, 20))
    assert response.headers["Content-Range"] == "bytes 10-19/1024"
    listed = [f.path for f in HfApi().list_repo_tree("tester/server-pages", "many")]
    assert len(listed) == 1005  # two pages, followed through the Link header
    assert len(hub_server.requests_matching("/tree/")) >= 2


def test_fault_hook_answers_in_place_of_the_server(hub_server, tmp_path):
    hub_server.create_repo("tester/server-faults", {"f.bin": b"ok"})

    def gone(request):
        if "/server-faults/resolve/" not in request.path:
            return False
        request.handler.reply(404, {"error": "injected"}, {"X-Error-Code": "RepoNotFound"})
        return True

    hub_server.faults.append(gone)
    try:
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download("tester/server-faults", "f.bin", cache_dir=tmp_path)
    finally:
        hub_server.faults.remove(gone)
    assert Path(hf_hub_download("tester/server-faults", "f.bin", cache_dir=tmp_path)).read_bytes() == b"ok"

"""Loading SAEs from Hub repos through the real huggingface_hub client and the loopback server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
import torch
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from sae_hub import SAE, SAEConfig
from sae_hub.errors import FormatError, SaeFilesMissingError

D_IN, D_SAE = 16, 48


def native_tensors(seed: int) -> dict[str, torch.Tensor]:
    """Seeded random ReLU-SAE tensors in the canonical orientation."""
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),
        "b_dec": torch.randn(D_IN, generator=g) * 0.1,
    }


def native_folder(root: Path, seed: int) -> tuple[Path, dict[str, torch.Tensor]]:
    """Write a native ReLU SAE (apply_b_dec_to_input) to `root/<seed>`; return (folder, tensors)."""
    tensors = native_tensors(seed)
    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="relu", apply_b_dec_to_input=True)
    folder = root / f"sae_{seed}"
    SAE.from_tensors(cfg, tensors).save_pretrained(folder)
    return folder, tensors


def relu_reference(t: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """float64 reference: f = relu((x - b_dec) W_enc + b_enc); x_hat = f W_dec + b_dec."""
    d = {k: v.double() for k, v in t.items()}
    f = torch.relu((x.double() - d["b_dec"]) @ d["W_enc"] + d["b_enc"])
    return f @ d["W_dec"] + d["b_dec"]


def assert_matches(sae: SAE, tensors: dict[str, torch.Tensor]) -> None:
    x = torch.randn(5, D_IN, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sae(x).double(), relu_reference(tensors, x), rtol=1e-5, atol=1e-5)


def resolve_gets(hub_server, repo_id: str) -> list[str]:
    """Paths of file GETs served for `repo_id` since the log was cleared."""
    return [r.path for r in hub_server.requests_matching(f"/{repo_id}/resolve/", method="GET")]


@pytest.fixture
def two_sae_repo(make_repo, tmp_path, request):
    """A repo with two native SAEs (`layer_0`, `layer_1`) and a README; returns (repo_id, sha, tensors)."""
    repo_id = f"tester/native-{request.node.name[:40]}"
    f0, _ = native_folder(tmp_path, 0)
    f1, t1 = native_folder(tmp_path, 1)
    sha = make_repo(repo_id, {"layer_0": f0, "layer_1": f1, "README.md": b"# two SAEs\n"})
    return repo_id, sha, t1


def test_repo_id_load_downloads_only_that_sae(two_sae_repo, hub_server):
    repo_id, sha, tensors = two_sae_repo
    hub_server.clear_log()
    sae = SAE.from_pretrained(repo_id, "layer_1")
    assert_matches(sae, tensors)
    assert sorted(resolve_gets(hub_server, repo_id)) == [
        f"/{repo_id}/resolve/{sha}/layer_1/config.json",
        f"/{repo_id}/resolve/{sha}/layer_1/model.safetensors",
    ]
    prov = sae.cfg.provenance
    assert (prov.repo_id, prov.sae_id, prov.revision, prov.source_format) == (
        repo_id,
        "layer_1",
        sha,
        "native",
    )


def test_revision_is_pinned_and_branches_resolve(make_repo, hub_server, tmp_path):
    repo_id = "tester/revisions"
    f_old, t_old = native_folder(tmp_path, 10)
    f_new, t_new = native_folder(tmp_path, 11)
    old = make_repo(repo_id, {"sae": f_old})
    new = make_repo(repo_id, {"sae": f_new})
    f_dev, t_dev = native_folder(tmp_path, 12)
    dev = make_repo(repo_id, {"sae": f_dev}, branch="dev")
    assert_matches(SAE.from_pretrained(repo_id, "sae", revision=old), t_old)
    latest = SAE.from_pretrained(repo_id, "sae")
    assert_matches(latest, t_new)
    assert latest.cfg.provenance.revision == new
    on_dev = SAE.from_pretrained(repo_id, "sae", revision="dev")
    assert_matches(on_dev, t_dev)
    assert on_dev.cfg.provenance.revision == dev


def test_offline_warm_cache_makes_zero_requests(two_sae_repo, hub_server, monkeypatch):
    repo_id, sha, tensors = two_sae_repo
    SAE.from_pretrained(repo_id, "layer_1")
    hub_server.clear_log()
    assert_matches(SAE.from_pretrained(repo_id, "layer_1", local_files_only=True), tensors)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    offline = SAE.from_pretrained(repo_id, "layer_1")
    assert_matches(offline, tensors)
    assert offline.cfg.provenance.revision == sha
    assert hub_server.log == []


def test_offline_cold_cache_says_what_to_download(two_sae_repo, tmp_path, hub_server):
    repo_id, _, _ = two_sae_repo
    hub_server.clear_log()
    with pytest.raises(LocalEntryNotFoundError) as info:
        SAE.from_pretrained(repo_id, "layer_1", cache_dir=tmp_path / "empty", local_files_only=True)
    message = str(info.value)
    assert f"sae-hub download {repo_id} layer_1" in message
    assert repo_id in message
    assert "layer_1" in message
    assert hub_server.log == []


def test_hf_hub_offline_environment_variable(two_sae_repo, tmp_path):
    """The real HF_HUB_OFFLINE=1 switch, in a fresh interpreter, against a warm and a cold cache."""
    repo_id, sha, _ = two_sae_repo
    SAE.from_pretrained(repo_id, "layer_0")
    script = textwrap.dedent(
        f"""
        import sys
        from huggingface_hub.errors import LocalEntryNotFoundError
        from sae_hub import SAE
        sae = SAE.from_pretrained({repo_id!r}, "layer_0")
        assert sae.cfg.provenance.revision == {sha!r}
        try:
            SAE.from_pretrained({repo_id!r}, "layer_1", cache_dir={str(tmp_path / "cold")!r})
        except LocalEntryNotFoundError as exc:
            assert "sae-hub download" in str(exc)
            print("OK")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


def test_missing_repo_revision_and_folder_name_them(two_sae_repo):
    repo_id, _, _ = two_sae_repo
    with pytest.raises(RepositoryNotFoundError, match="tester/no-such-repo"):
        SAE.from_pretrained("tester/no-such-repo", "layer_0")
    with pytest.raises(RevisionNotFoundError, match="no-such-branch"):
        SAE.from_pretrained(repo_id, "layer_0", revision="no-such-branch")
    with pytest.raises(SaeFilesMissingError) as info:
        SAE.from_pretrained(repo_id, "layer_9")
    assert repo_id in str(info.value)
    assert "layer_9" in str(info.value)
    assert info.value.paths == ["layer_9"]


def test_folder_with_partial_files_is_refused(make_repo, tmp_path):
    folder, _ = native_folder(tmp_path, 3)
    sha = make_repo("tester/partial", {"sae/config.json": folder / "config.json", "sae/other.txt": b"x"})
    with pytest.raises(FormatError, match="Could not detect"):
        SAE.from_pretrained("tester/partial", "sae")
    make_repo("tester/partial", {"sae/model.safetensors": (folder / "model.safetensors").read_bytes()[:200]})
    with pytest.raises(FormatError, match=r"truncated.*model\.safetensors"):
        SAE.from_pretrained("tester/partial", "sae")
    assert sha


def test_gated_repo_raises_gated_error(make_repo, tmp_path):
    folder, _ = native_folder(tmp_path, 4)
    make_repo("tester/gated", {"sae": folder}, gated=True)
    with pytest.raises(GatedRepoError):
        SAE.from_pretrained("tester/gated", "sae")

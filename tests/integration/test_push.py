"""Pushing SAEs with model cards through the real huggingface_hub client to the loopback Hub server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError

from sae_hub import SAE, SAEConfig
from sae_hub.cli import main
from sae_hub.config import Provenance
from sae_hub.push import push_run, push_sae

METRICS = {"l0": 31.5, "fvu": 0.123, "explained_variance": 0.877, "dead_pct": 0.5, "training_tokens": 40960}


def trained_like(arch: str, seed: int, hook: str = "blocks.6.hook_resid_post") -> SAE:
    """A seeded SAE carrying the provenance a training run writes."""
    cfg = SAEConfig(d_in=16, d_sae=64, architecture=arch, k=8 if arch in ("topk", "batchtopk") else None,
                    apply_b_dec_to_input=True,
                    provenance=Provenance(model="HuggingFaceTB/SmolLM2-135M-Instruct", hook=hook, layer=6,
                                          extra={"metrics": METRICS, "training_config": {
                                              "architecture": arch, "dataset": "org/corpus", "total_tokens": 40960,
                                              "context_size": 64}}))  # fmt: skip
    sae = SAE(cfg)
    sae.reset_parameters(seed=seed)
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed))
        if hasattr(sae, "threshold"):
            sae.threshold.uniform_(0.1, 0.5, generator=torch.Generator().manual_seed(seed))
    return sae


def history(server, repo_id: str) -> list:
    """Commits of `main`, newest first, read from the server's own state."""
    repo = server.repos[("model", repo_id)]
    out, sha = [], repo.refs["main"]
    while sha is not None:
        out.append(repo.commits[sha])
        sha = repo.commits[sha].parent
    return out


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def assert_same(a: SAE, b: SAE) -> None:
    ta, tb = a.state_tensors(), b.state_tensors()
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name


def test_push_sae_is_one_commit_with_card_and_loads_back(hub_server):
    sae = trained_like("batchtopk", seed=1)
    hub_server.clear_log()
    url = sae.push_to_hub("tester/one-sae")
    assert len(hub_server.requests_matching("/commit/", method="POST")) == 1
    log = history(hub_server, "tester/one-sae")
    assert len(log) == 2  # the initial .gitattributes commit + ours
    assert url.endswith(log[0].sha)
    files = set(HfApi().list_repo_files("tester/one-sae"))
    assert {"config.json", "model.safetensors", "README.md", "metrics.json", "training_config.json"} <= files
    card = ModelCard.load("tester/one-sae")
    meta = front_matter(str(card))
    assert meta["library_name"] == "sae_hub"
    assert "sparse-autoencoder" in meta["tags"]
    assert "batchtopk" in meta["tags"]
    assert meta["base_model"] == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert meta["datasets"] == ["org/corpus"]
    assert meta["license"] == "apache-2.0"
    body = card.text
    assert 'SAE.from_pretrained("tester/one-sae")' in body
    assert "`blocks.6.hook_resid_post`" in body
    assert "| d_in | 16 |" in body
    assert "| width (d_sae) | 64 |" in body
    assert "| L0 (mean active latents per token) | 31.5 |" in body
    assert "0.123" in body
    theta = sae.threshold.detach()
    assert f"{float(theta.min()):.4g} / " in body  # k/threshold row
    assert "total_tokens: 40960" in body  # the training config
    again = SAE.from_pretrained("tester/one-sae")
    assert_same(sae, again)
    assert again.cfg.architecture == "batchtopk"
    assert again.cfg.provenance.hook == "blocks.6.hook_resid_post"


def test_push_run_into_subfolders_then_add_one(hub_server):
    saes = {"layer_2": trained_like("topk", 2, "blocks.2.hook_resid_post"),
            "layer_4": trained_like("jumprelu", 4, "blocks.4.hook_resid_post")}  # fmt: skip
    hub_server.clear_log()
    push_run(saes, "tester/run")
    assert len(hub_server.requests_matching("/commit/", method="POST")) == 1
    api = HfApi()
    manifest = json.loads(Path(api.hf_hub_download("tester/run", "config.json")).read_text())
    assert sorted(manifest["saes"]) == ["layer_2", "layer_4"]
    third = trained_like("relu", 6, "blocks.6.hook_resid_post")
    push_sae(third, "tester/run", path_in_repo="layer_6")
    manifest = json.loads(Path(api.hf_hub_download("tester/run", "config.json")).read_text())
    assert sorted(manifest["saes"]) == ["layer_2", "layer_4", "layer_6"]
    release = ModelCard.load("tester/run")
    assert front_matter(str(release))["library_name"] == "sae_hub"
    for sid in ("layer_2", "layer_4", "layer_6"):
        assert f"[`{sid}`]({sid}/README.md)" in release.text
    sub_card = api.hf_hub_download("tester/run", "layer_4/README.md")
    assert 'SAE.from_pretrained("tester/run", "layer_4")' in Path(sub_card).read_text()
    assert_same(saes["layer_4"], SAE.from_pretrained("tester/run", "layer_4"))
    assert_same(third, SAE.from_pretrained("tester/run", "layer_6"))


def test_a_concurrent_commit_is_not_overwritten(hub_server):
    push_sae(trained_like("topk", 7), "tester/race")

    def sneak_in(request):  # another writer commits between our head lookup and our commit
        if "/preupload/" in request.path:
            hub_server.faults.remove(sneak_in)
            hub_server.commit("tester/race", {"other.txt": b"someone else"})
        return False

    hub_server.faults.append(sneak_in)
    with pytest.raises(HfHubHTTPError) as err:
        push_sae(trained_like("topk", 8), "tester/race")
    assert err.value.response.status_code == 412
    assert "other.txt" in HfApi().list_repo_files("tester/race")


def test_cli_push_folder(hub_server, tmp_path, capsys):
    sae = trained_like("topk", 9)
    sae.save_pretrained(tmp_path / "sae")
    assert main(["push", str(tmp_path / "sae"), "tester/from-cli", "--message", "from the CLI"]) == 0
    assert capsys.readouterr().out.strip().startswith(hub_server.url)
    assert history(hub_server, "tester/from-cli")[0].message == "from the CLI"
    assert_same(sae, SAE.from_pretrained("tester/from-cli"))

"""converters/mirror_release.py mirrors a release into a native repo (one commit, cards), via the public API."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from fixtures.layouts import build_gemma_scope
from fixtures.reference import inputs
from huggingface_hub import HfApi, ModelCard

from sae_hub import SAE, registry

MIRROR = Path(__file__).resolve().parents[2] / "converters" / "mirror_release.py"


def mirror_module():
    spec = importlib.util.spec_from_file_location("mirror_release", MIRROR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mirror_release_pushes_native_repo_with_cards(hub_server, make_repo, tmp_path, capsys):
    release = "gemma-scope-2b-pt-res"
    ids = registry.get_release(release).sae_ids[:2]
    for seed, sae_id in enumerate(ids):
        r = registry.resolve(release, sae_id)
        raw = build_gemma_scope(tmp_path / "upstream", r.path, seed=10 + seed)
        make_repo(r.repo_id, {f: (raw.root / f).read_bytes() for f in raw.files})
    hub_server.clear_log()
    argv = [release, "--to-repo", "tester/gemma-scope-mirror", "--limit", "2"]
    assert mirror_module().main(argv) == 0
    assert "pushed 2 SAE(s) to tester/gemma-scope-mirror" in capsys.readouterr().out
    assert (
        len(hub_server.requests_matching("/api/models/tester/gemma-scope-mirror/commit/", method="POST")) == 1
    )

    files = HfApi().list_repo_files("tester/gemma-scope-mirror")
    for sae_id in ids:
        assert {f"{sae_id}/config.json", f"{sae_id}/model.safetensors", f"{sae_id}/README.md"} <= set(files)
        mirrored = SAE.from_pretrained("tester/gemma-scope-mirror", sae_id)
        upstream = SAE.from_pretrained(release, sae_id)
        assert mirrored.cfg.provenance.source_format == "gemma-scope"  # native copy keeps its origin
        x = inputs(upstream.cfg.d_in).float()
        torch.testing.assert_close(mirrored(x), upstream(x), rtol=0, atol=0)
    card = ModelCard.load("tester/gemma-scope-mirror")
    assert card.data.library_name == "sae_hub"
    assert "## Source" in card.text
    assert "google/gemma-scope-2b-pt-res" in card.text
    assert all(sae_id in card.text for sae_id in ids)

"""`sae-hub info` reads configs and tensor headers with byte ranges; `sae-hub download` warms the cache."""

from __future__ import annotations

import io
import json

import huggingface_hub.constants as hf_constants
import numpy as np
import pytest
import torch

from sae_hub import SAE, SAEConfig
from sae_hub.cli import main
from sae_hub.errors import FormatError
from sae_hub.hub import inspect_remote

D_IN, D_SAE = 64, 2048  # 512 KB per matrix: far more than the headers


@pytest.fixture(scope="module")
def big_native_repo(hub_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("info") / "sae"
    g = torch.Generator().manual_seed(7)
    tensors = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g),
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),
        "b_dec": torch.randn(D_IN, generator=g),
    }
    SAE.from_tensors(SAEConfig(d_in=D_IN, d_sae=D_SAE), tensors).save_pretrained(folder)
    repo_id = "tester/info-native"
    files = {f"layer_3/{p.name}": p.read_bytes() for p in folder.iterdir()}
    hub_server.create_repo(repo_id, files, exist_ok=True)
    return repo_id, len(files["layer_3/model.safetensors"])


def npz_bytes(arrays: dict[str, np.ndarray], *, compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def test_safetensors_shapes_from_headers_only(big_native_repo, hub_server):
    repo_id, weights_size = big_native_repo
    hub_server.clear_log()
    info = inspect_remote(repo_id, "layer_3")
    assert info.format == "native"
    by_path = {f.path: f for f in info.files}
    weights = by_path["layer_3/model.safetensors"]
    shapes = {t.name: (t.dtype, t.shape) for t in weights.tensors}
    assert shapes == {
        "W_dec": ("F32", (D_SAE, D_IN)),
        "W_enc": ("F32", (D_IN, D_SAE)),
        "b_dec": ("F32", (D_IN,)),
        "b_enc": ("F32", (D_SAE,)),
    }
    assert by_path["layer_3/config.json"].config["d_sae"] == D_SAE
    served = sum(r.bytes_sent for r in hub_server.log)
    assert weights.size == weights_size
    assert served < weights_size / 10, (served, weights_size)
    assert all(r.range for r in hub_server.requests_matching("model.safetensors", method="GET"))


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_shapes_from_central_directory(hub_server, compressed):
    rng = np.random.default_rng(0)
    arrays = {
        "W_enc": rng.standard_normal((D_IN, D_SAE), dtype=np.float32),
        "W_dec": rng.standard_normal((D_SAE, D_IN), dtype=np.float32),
        "b_enc": np.zeros(D_SAE, np.float32),
        "b_dec": np.zeros(D_IN, np.float32),
        "threshold": np.ones(D_SAE, np.float32),
    }
    data = npz_bytes(arrays, compressed=compressed)
    repo_id = f"tester/info-npz-{int(compressed)}"
    hub_server.create_repo(repo_id, {"layer_1/width_2k/average_l0_5/params.npz": data}, exist_ok=True)
    hub_server.clear_log()
    info = inspect_remote(repo_id, "layer_1/width_2k/average_l0_5")
    assert info.format == "gemma-scope"
    (npz,) = info.files
    assert {t.name: (t.dtype, t.shape) for t in npz.tensors} == {
        name: ("float32", a.shape) for name, a in arrays.items()
    }
    served = sum(r.bytes_sent for r in hub_server.log)
    assert served < len(data) / 4, (served, len(data))


def test_corrupt_npz_is_refused_naming_the_file(hub_server):
    data = npz_bytes({"W_enc": np.zeros((4, 4), np.float32)}, compressed=False)
    broken = data[: len(data) // 2]
    hub_server.create_repo("tester/info-bad-npz", {"sae/params.npz": broken}, exist_ok=True)
    with pytest.raises(FormatError, match=r"tester/info-bad-npz.*sae/params\.npz"):
        inspect_remote("tester/info-bad-npz", "sae")


def test_info_cli_text_and_json(big_native_repo, capsys):
    repo_id, _ = big_native_repo
    assert main(["info", repo_id, "layer_3"]) == 0
    out = capsys.readouterr().out
    assert f"W_enc  F32       [{D_IN}, {D_SAE}]" in out
    assert "weights not downloaded" in out
    assert main(["info", repo_id, "layer_3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["files"][1]["tensors"]["W_dec"]["shape"] == [D_SAE, D_IN]


def test_download_cli_then_offline_load(big_native_repo, hub_server, monkeypatch, capsys, tmp_path):
    repo_id, _ = big_native_repo
    cache = str(tmp_path / "hf")
    assert main(["download", repo_id, "layer_3", "--cache-dir", cache]) == 0
    assert f"cached {repo_id}@" in capsys.readouterr().out
    hub_server.clear_log()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    sae = SAE.from_pretrained(repo_id, "layer_3", cache_dir=cache)
    assert sae.cfg.d_sae == D_SAE
    assert hub_server.log == []


def test_cli_reports_missing_repo(capsys):
    assert main(["info", "tester/does-not-exist", "x"]) == 2
    assert "tester/does-not-exist" in capsys.readouterr().err


def test_info_release_summary_and_suggestions(capsys):
    assert main(["info", "gemma-scope-2b-pt-res", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["repo_id"] == "google/gemma-scope-2b-pt-res"
    assert "layer_20/width_16k/average_l0_71" in data["sae_ids"]
    assert data["saes"] == len(data["sae_ids"])
    assert main(["info", "gemma-scope-2b-pt-rs"]) == 2
    assert "gemma-scope-2b-pt-res" in capsys.readouterr().err

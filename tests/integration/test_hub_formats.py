"""Every format, served by the loopback Hub in its release's exact layout, loaded by the real client.

Each case builds one SAE with the formats' layout builder at the path the registry resolves to (plus a
sibling SAE of the same release as a decoy), serves it, and loads it by registry name and by repo id.
The Hub-loaded SAE must equal the same files read from a local folder (whose math each format's unit
test checks against its own float64 reference), and three formats are checked here against the float64
reference directly. Only the SAE's own files may be downloaded.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from fixtures.layouts import BUILDERS, RawSAE
from fixtures.reference import assert_matches, d, inputs, jumprelu, relu, standardize, topk_then_relu

from sae_hub import SAE, formats, registry
from sae_hub.errors import FormatError, ReleaseNotFoundError, SaeFilesMissingError, SaeNotFoundError
from sae_hub.hub._target import OPENAI_PUBLIC_BASE_URL

# format -> (release, builder options) picked from the registry; the first two SAE ids are used.
RELEASES: dict[str, tuple[str, dict]] = {
    "saelens": ("gpt2-small-res-jb", {}),
    "gemma-scope": ("gemma-scope-2b-pt-res", {}),
    "gemma-scope-2": ("gemma-scope-2-270m-pt-res", {}),
    "llama-scope": ("llama_scope_lxr_8x", {}),
    "llama-scope-r1": ("llama_scope_r1_distill", {}),
    "openai": ("openai-gpt2-small-v5-32k-resid-post-mlp", {"version": "v5"}),
    "sparsify": ("eleutherai-sae-llama-3-8b-32x", {}),
    "dictionary-learning": ("gpt-oss-20b-andyrdt", {}),
    "goodfire": ("goodfire-llama-3.1-8b-instruct", {}),
}


def release_for(fmt: str) -> tuple[str, list[str], dict]:
    """The case's release (or the first supported one of that format) and up to three of its SAE ids."""
    name, options = RELEASES[fmt]
    if not registry.is_release(name):
        name = next(r.name for r in registry.list_releases() if r.format == fmt and r.supported)
    ids = registry.get_release(name).sae_ids
    return name, ids[:3], options


def publish(hub_server, make_repo, raw: RawSAE, resolved) -> None:
    """Serve the builder's files where the registry says they live (Hub repo or OpenAI URL)."""
    if resolved.repo_id is not None:
        make_repo(resolved.repo_id, {f: (raw.root / f).read_bytes() for f in raw.files})
        return
    for f in raw.files:
        hub_server.add_url_file(
            "openai/" + resolved.url[len(OPENAI_PUBLIC_BASE_URL) :].lstrip("/"), (raw.root / f).read_bytes()
        )


def local_sae(raw: RawSAE, fmt: str, overrides: dict) -> SAE:
    cfg, tensors, _ = formats.read(raw.path, format=fmt)
    return SAE.from_tensors(cfg.replace(**overrides) if overrides else cfg, tensors)


def downloaded(hub_server) -> set[str]:
    """Repo-relative paths (or URL paths) of every file body served since the log was cleared."""
    out = set()
    for r in hub_server.log:
        if r.method == "GET" and "/resolve/" in r.path:
            out.add(r.path.split("/resolve/", 1)[1].split("/", 1)[1])
        elif r.method == "GET" and r.path.startswith("/openai/"):
            out.add(r.path)
    return out


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_registry_release_loads_only_its_files(fmt, hub_server, make_repo, tmp_path):
    release, ids, options = release_for(fmt)
    sae_id, builder = ids[0], BUILDERS[fmt]
    resolved = registry.resolve(release, sae_id)
    raw = builder(tmp_path / "repo", resolved.path, seed=1, **options)
    for sibling in ids[1:2]:  # a decoy SAE of the same release, never to be downloaded
        decoy = registry.resolve(release, sibling)
        publish(hub_server, make_repo, builder(tmp_path / "decoy", decoy.path, seed=2, **options), decoy)
    publish(hub_server, make_repo, raw, resolved)
    hub_server.clear_log()
    sae = SAE.from_pretrained(release, sae_id)
    if resolved.repo_id is not None:  # SAELens's sparsity.safetensors is not needed to load
        assert downloaded(hub_server) == {f for f in raw.files if not f.endswith("sparsity.safetensors")}
    else:
        assert downloaded(hub_server) == {
            "/openai/" + resolved.url[len(OPENAI_PUBLIC_BASE_URL) :].lstrip("/")
        }
    local = local_sae(raw, fmt, dict(resolved.config_overrides))
    x = inputs(sae.cfg.d_in).float()
    torch.testing.assert_close(sae(x), local(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sae.encode(x), local.encode(x), rtol=1e-6, atol=1e-6)
    prov = sae.cfg.provenance
    assert (prov.release, prov.sae_id, prov.repo_id, prov.hook, prov.model, prov.layer) == (
        release,
        sae_id,
        resolved.repo_id,
        resolved.hook,
        resolved.model,
        resolved.layer,
    )
    if resolved.repo_id is not None:
        assert prov.revision == hub_server.head(resolved.repo_id)


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_repo_id_load_detects_the_format(fmt, make_repo, tmp_path):
    raw = BUILDERS[fmt](tmp_path, seed=3)
    repo_id = f"tester/detect-{fmt}"
    sha = make_repo(repo_id, {f: (tmp_path / f).read_bytes() for f in raw.files})
    sae = SAE.from_pretrained(repo_id, raw.path_in_repo)
    assert sae.cfg.provenance.source_format == fmt
    assert sae.cfg.provenance.revision == sha
    local = local_sae(raw, fmt, {})
    x = inputs(sae.cfg.d_in).float()
    torch.testing.assert_close(sae(x), local(x), rtol=1e-6, atol=1e-6)


# ---- float64 references of three formats' own math, on the raw tensors ---------------------------


def _load_raw(fmt: str, hub_server, make_repo, tmp_path: Path, **options) -> tuple[SAE, RawSAE]:
    release, ids, defaults = release_for(fmt)
    sae_id = ids[-1]  # an SAE no other test serves (URL downloads are cached as immutable)
    resolved = registry.resolve(release, sae_id)
    raw = BUILDERS[fmt](tmp_path, resolved.path, seed=4, **{**defaults, **options})
    publish(hub_server, make_repo, raw, resolved)
    return SAE.from_pretrained(release, sae_id), raw


def test_gemma_scope_equals_float64_reference(hub_server, make_repo, tmp_path):
    sae, raw = _load_raw("gemma-scope", hub_server, make_repo, tmp_path)
    t, x = raw.tensors, inputs(sae.cfg.d_in)
    f = jumprelu(x @ d(t["W_enc"]) + d(t["b_enc"]), d(t["threshold"]))
    assert 0 < (f != 0).sum() < f.numel()
    assert_matches(sae.encode(x.float()), f, what="encode")
    assert_matches(sae(x.float()), f @ d(t["W_dec"]) + d(t["b_dec"]), what="forward")


def test_saelens_equals_float64_reference(hub_server, make_repo, tmp_path):
    sae, raw = _load_raw("saelens", hub_server, make_repo, tmp_path, apply_b_dec_to_input=True)
    t, x = raw.tensors, inputs(sae.cfg.d_in)
    f = relu((x - d(t["b_dec"])) @ d(t["W_enc"]) + d(t["b_enc"]))
    assert_matches(sae.encode(x.float()), f, what="encode")
    assert_matches(sae(x.float()), f @ d(t["W_dec"]) + d(t["b_dec"]), what="forward")


def test_openai_v5_equals_float64_reference(hub_server, make_repo, tmp_path):
    sae, raw = _load_raw("openai", hub_server, make_repo, tmp_path, k=4)
    t, x = raw.tensors, inputs(sae.cfg.d_in, scale=3.0)
    x_n, mu, std = standardize(x)
    pre = (x_n - d(t["pre_bias"])) @ d(t["encoder.weight"]).T + d(t["latent_bias"])
    f = topk_then_relu(pre, 4)
    y = (f @ d(t["decoder.weight"]).T + d(t["pre_bias"])) * std + mu
    assert_matches(sae.encode(x.float()), f, what="encode")
    assert_matches(sae(x.float()), y, what="forward")
    assert math.isclose((f != 0).sum(-1).double().mean().item(), 4.0)


# ---- conversion cache --------------------------------------------------------------------------


def test_foreign_format_is_converted_once_per_commit(hub_server, make_repo, tmp_path):
    from sae_hub import constants

    release, (sae_id, *_), _ = release_for("gemma-scope")
    resolved = registry.resolve(release, sae_id)
    old = BUILDERS["gemma-scope"](tmp_path / "old", resolved.path, seed=5)
    publish(hub_server, make_repo, old, resolved)
    first = SAE.from_pretrained(release, sae_id)
    commit = first.cfg.provenance.revision
    native_copy = constants.SAE_HUB_CACHE / "converted" / resolved.repo_id / commit / resolved.path
    assert sorted(p.name for p in native_copy.iterdir()) == ["config.json", "model.safetensors"]

    # Second load: one revision lookup, no file download, and the npz is never read again (it is gone).
    hub_server.clear_log()
    snapshot = Path(hf_hub_cache()) / f"models--{resolved.repo_id.replace('/', '--')}" / "snapshots" / commit
    (snapshot / resolved.path / "params.npz").unlink()
    second = SAE.from_pretrained(release, sae_id)
    assert [r.path.split("?")[0] for r in hub_server.log] == [f"/api/models/{resolved.repo_id}/revision/main"]
    x = inputs(first.cfg.d_in).float()
    torch.testing.assert_close(second(x), first(x), rtol=0, atol=0)
    assert second.cfg.provenance.source_format == "gemma-scope"

    # A new commit converts again, into its own folder.
    new = BUILDERS["gemma-scope"](tmp_path / "new", resolved.path, seed=6)
    publish(hub_server, make_repo, new, resolved)
    third = SAE.from_pretrained(release, sae_id)
    assert third.cfg.provenance.revision != commit
    f = jumprelu(d(x) @ d(new.tensors["W_enc"]) + d(new.tensors["b_enc"]), d(new.tensors["threshold"]))
    assert_matches(third.encode(x), f, what="encode after new commit")


def hf_hub_cache() -> str:
    from huggingface_hub import constants as hf_constants

    return hf_constants.HF_HUB_CACHE


# ---- bad inputs --------------------------------------------------------------------------------


def test_unknown_release_and_sae_id_suggest_close_names():
    with pytest.raises(ReleaseNotFoundError) as info:
        SAE.from_pretrained("gemma-scope-2b-pt-rs", "layer_20/width_16k/average_l0_71")
    assert "gemma-scope-2b-pt-res" in info.value.suggestions
    with pytest.raises(SaeNotFoundError) as info:
        SAE.from_pretrained("gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_70")
    assert "layer_20/width_16k/average_l0_71" in info.value.suggestions


def test_registry_files_missing_from_repo_name_repo_revision_path(make_repo, hub_server, tmp_path):
    release, (_, sae_id, *_), _ = release_for("saelens")
    resolved = registry.resolve(release, sae_id)
    make_repo(resolved.repo_id, {"unrelated.txt": b"x"})
    head = hub_server.commit(resolved.repo_id, {}, deletions=(f"{resolved.path}/",))
    with pytest.raises(SaeFilesMissingError) as info:
        SAE.from_pretrained(release, sae_id)
    message = str(info.value)
    assert resolved.repo_id in message
    assert head in message
    assert resolved.path in message


def test_corrupt_npz_is_refused_naming_the_file(make_repo, tmp_path):
    release, (sae_id, *_), _ = release_for("gemma-scope")
    resolved = registry.resolve(release, sae_id)
    make_repo(resolved.repo_id, {f"{resolved.path}/params.npz": b"PK\x03\x04 not really a zip"})
    with pytest.raises(FormatError, match=r"params\.npz"):
        SAE.from_pretrained(release, sae_id)


def test_pt_with_arbitrary_objects_is_refused(hub_server, tmp_path):
    release, (sae_id, *_), _ = release_for("openai")
    resolved = registry.resolve(release, sae_id)
    evil = tmp_path / "evil.pt"
    torch.save({"encoder.weight": torch.zeros(2, 2), "payload": Path("/etc/passwd")}, evil)
    hub_server.add_url_file(
        "openai/" + resolved.url[len(OPENAI_PUBLIC_BASE_URL) :].lstrip("/"), evil.read_bytes()
    )
    with pytest.raises(FormatError, match=r"\.pt"):
        SAE.from_pretrained(release, sae_id, force_download=True)


# ---- offline -----------------------------------------------------------------------------------


def test_registry_release_offline_cold_and_warm(hub_server, make_repo, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    release, (sae_id, *_), _ = release_for("gemma-scope")
    resolved = registry.resolve(release, sae_id)
    publish(hub_server, make_repo, BUILDERS["gemma-scope"](tmp_path, resolved.path, seed=7), resolved)
    hub_server.clear_log()
    with pytest.raises(LocalEntryNotFoundError) as info:
        SAE.from_pretrained(release, sae_id, cache_dir=tmp_path / "cold", local_files_only=True)
    assert f"sae-hub download {release} {sae_id}" in str(info.value)
    assert resolved.repo_id in str(info.value)

    url_release, (_, url_id, *_), options = release_for("openai")
    url_resolved = registry.resolve(url_release, url_id)
    publish(
        hub_server,
        make_repo,
        BUILDERS["openai"](tmp_path, url_resolved.path, seed=8, **options),
        url_resolved,
    )
    online = [SAE.from_pretrained(release, sae_id), SAE.from_pretrained(url_release, url_id)]
    hub_server.clear_log()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    offline = [SAE.from_pretrained(release, sae_id), SAE.from_pretrained(url_release, url_id)]
    assert hub_server.log == []
    for a, b in zip(online, offline, strict=True):
        x = inputs(a.cfg.d_in).float()
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert offline[1].cfg.provenance.extra["url"] == url_resolved.url


def test_damaged_native_copy_is_converted_again(hub_server, make_repo, tmp_path):
    from sae_hub import constants

    release, (sae_id, *_), _ = release_for("gemma-scope")
    resolved = registry.resolve(release, sae_id)
    raw = BUILDERS["gemma-scope"](tmp_path, resolved.path, seed=9)
    publish(hub_server, make_repo, raw, resolved)
    first = SAE.from_pretrained(release, sae_id)
    commit, d_in = first.cfg.provenance.revision, first.cfg.d_in
    del first  # its weights map the file about to be damaged
    copy = constants.SAE_HUB_CACHE / "converted" / resolved.repo_id / commit / resolved.path
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a crash or a full disk left half a file
    again = SAE.from_pretrained(release, sae_id)
    x = inputs(d_in)
    f = jumprelu(x @ d(raw.tensors["W_enc"]) + d(raw.tensors["b_enc"]), d(raw.tensors["threshold"]))
    assert_matches(again.encode(x.float()), f, what="encode after reconversion")
    assert weights.stat().st_size > 100

"""SAELens compatibility: every SAELens release and id resolves to the same (repo, path) here.

Reads the `pretrained_saes.yaml` that the installed sae-lens ships, without importing sae_lens (its
import takes tens of seconds and only its data file is needed here).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from sae_hub import registry

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def saelens_registry() -> dict:
    spec = importlib.util.find_spec("sae_lens")
    if spec is None or spec.origin is None:
        pytest.skip("sae-lens is not installed")
    path = Path(spec.origin).parent / "pretrained_saes.yaml"
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def test_every_saelens_release_and_id_resolves_identically(saelens_registry):
    checked = 0
    for name, entry in saelens_registry.items():
        rel = registry.get_release(name)
        assert rel.in_saelens, name
        # SAELens keeps the last entry of a duplicated id and turns integer paths into strings.
        theirs = {sae["id"]: str(sae["path"]) for sae in entry["saes"]}
        assert set(rel.saes) == set(theirs), name
        for sae_id, path in theirs.items():
            sae = rel.saes[sae_id]
            assert (sae.repo_id, sae.path) == (entry["repo_id"], path), (name, sae_id)
            assert sae.saelens_model == entry["model"]
            checked += 1
    assert checked >= 13_000


def test_only_saelens_releases_claim_to_be_saelens(saelens_registry):
    claimed = {r.name for r in registry.list_releases() if r.in_saelens}
    assert claimed == set(saelens_registry)


@pytest.mark.slow
def test_data_files_are_what_the_build_script_writes(saelens_registry):
    sys.path.insert(0, str(ROOT / "converters"))
    try:
        import build_registry
    finally:
        sys.path.remove(str(ROOT / "converters"))
    assert build_registry.main(["--check"]) == 0

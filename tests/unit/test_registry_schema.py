"""Registry data-file schema: good files parse and expand; every bad entry names the file and field."""

from __future__ import annotations

import textwrap

import pytest

from sae_hub.errors import ConfigError
from sae_hub.registry.loader import parse_file

GOOD = """
schema_version: 1
family: demo
releases:
- name: demo-release
  repo_id: org/demo
  model: org/model
  format: saelens
  links: {model: https://huggingface.co/org/model}
  config_overrides: {input_scale: 2.0, output_scale: 2.0}
  defaults: {site: res, width: 16384}
  groups:
  - defaults:
      id: l{layer}_{width:k}_{tag}
      path: folder/{id}
      hook: blocks.{layer}.hook_resid_post
      hf_hook: model.layers.{layer}.output
    columns: [layer, l0]
    rows: [[0, 12.5], [3, 40]]
    product: {tag: [a, b]}
  - defaults: {id: embed, path: embed, hook: hook_embed, site: embedding, width: 1048576}
    columns: []
    rows: [[]]
  - defaults: {id: 'L{layer}', path: 'p{layer}', hook: 'blocks.{layer}.hook_mlp_out', site: mlp}
    product: {layer: 0..2}
"""


def _release(text: str = GOOD):
    (rel,) = parse_file(textwrap.dedent(text), source="demo.yaml")
    return rel


def test_good_file_expands_rows_times_product():
    rel = _release()
    assert rel.n_saes == 4 + 1 + 3
    saes = rel.saes
    assert list(saes) == ["l0_16k_a", "l0_16k_b", "l3_16k_a", "l3_16k_b", "embed", "L0", "L1", "L2"]
    sae = saes["l3_16k_b"]
    assert (sae.path, sae.hook, sae.hf_hook, sae.layer, sae.l0) == (
        "folder/l3_16k_b",
        "blocks.3.hook_resid_post",
        "model.layers.3.output",
        3,
        40.0,
    )
    assert sae.config_overrides == {"input_scale": 2.0, "output_scale": 2.0}
    assert saes["embed"].layer is None
    assert saes["embed"].width == 1048576
    assert saes["L2"].site == "mlp"
    assert saes["L2"].width == 16384


BAD = [
    # (replace this, with that, field the error must name)
    ("schema_version: 1", "schema_version: 2", "schema_version"),
    ("format: saelens", "format: pickle-soup", "format"),
    ("  model: org/model\n", "", "model"),
    ("  format: saelens", "  formatt: saelens", "formatt"),
    ("config_overrides: {input_scale: 2.0, output_scale: 2.0}", "config_overrides: {scale: 2.0}", "scale"),
    (
        "config_overrides: {input_scale: 2.0, output_scale: 2.0}",
        "config_overrides: {input_scale: -1}",
        "input_scale",
    ),
    ("defaults: {site: res, width: 16384}", "defaults: {site: res, widht: 16384}", "widht"),
    ("rows: [[0, 12.5], [3, 40]]", "rows: [[0, 12.5], [3]]", "rows"),
    ("rows: [[0, 12.5], [3, 40]]", "rows: [[zero, 12.5], [3, 40]]", "layer"),
    ("defaults: {site: res, width: 16384}", "defaults: {site: resid, width: 16384}", "site"),
    ("      hook: blocks.{layer}.hook_resid_post\n", "", "hook"),
    ("id: l{layer}_{width:k}_{tag}", "id: l{layer}_{width:k}_{tag}{nope}", "id"),
    ("id: l{layer}_{width:k}_{tag}", "id: l{layer}_{width:k}", "tag"),
    ("product: {layer: 0..2}", "product: {layer: 2..0}", "layer"),
    ("{id: embed, path: embed,", "{id: L0, path: embed,", "id"),
    ("repo_id: org/demo", "repo_id: null", "path"),
]


@pytest.mark.parametrize(("old", "new", "field"), BAD)
def test_bad_entry_names_file_release_and_field(old, new, field):
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        _release(GOOD.replace(old, new)).saes  # noqa: B018  (expansion validates the SAEs)
    message = str(info.value)
    assert "demo.yaml" in message, message
    assert repr(field) in message, message
    assert info.value.field == field


def test_url_entries_must_be_https():
    text = GOOD.replace("  repo_id: org/demo\n", "").replace(
        "path: folder/{id}", "path: folder/{id}\n      url: http://example.com/folder/{id}"
    )
    with pytest.raises(ConfigError, match="https://"):
        _release(text).saes  # noqa: B018


def test_not_yaml_is_refused_with_the_file_name():
    with pytest.raises(ConfigError, match=r"demo\.yaml: not valid YAML"):
        parse_file("releases: [unclosed", source="demo.yaml")


def test_list_cells_stand_for_one_row_per_element():
    text = GOOD.replace("rows: [[0, 12.5], [3, 40]]", "rows: [[[0, 1, 2], 12.5], [3, 40]]")
    rel = _release(text)
    assert rel.n_saes == 4 * 2 + 1 + 3
    got = {(s.layer, s.l0) for s in rel.saes.values() if s.site == "res"}
    assert got == {(0, 12.5), (1, 12.5), (2, 12.5), (3, 40.0)}
    with pytest.raises(ConfigError, match="list cell"):
        _release(GOOD.replace("rows: [[0, 12.5], [3, 40]]", "rows: [[[], 12.5]]"))

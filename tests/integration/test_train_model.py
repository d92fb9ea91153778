"""Training from a real (tiny) transformers model: the activation cache, the CLI, and pushing the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from sae_hub import SAE
from sae_hub.cli import main
from sae_hub.errors import ConfigError, FormatError
from sae_hub.train.activations import ModelSource
from sae_hub.train.cache import MANIFEST, CachedSource
from sae_hub.train.config import TrainConfig
from sae_hub.train.trainer import train

pytest.importorskip("transformers")
from fixtures.tiny_models import byte_tokenizer, tiny_model

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]
TEXT = "\n\n".join(
    f"Paragraph {i}: sparse autoencoders split activations into features; the cache keeps them on disk."
    for i in range(60)
)


pytestmark = pytest.mark.usefixtures("one_thread")


def cfg_for(tmp_path: Path, **kw) -> TrainConfig:
    (tmp_path / "text.txt").write_text(TEXT)
    base = dict(model=None, hooks=HOOKS, dataset=str(tmp_path / "text.txt"), context_size=32, d_sae=64, k=4,
                batch_size=128, total_tokens=128 * 12, buffer_tokens=512, eval_tokens=256, model_batch_size=4,
                activation_cache=str(tmp_path / "cache"), output_dir=str(tmp_path / "run"))  # fmt: skip
    return TrainConfig(**(base | kw))


def test_cache_round_trip_and_truncated_shard_rebuilt(tmp_path):
    cfg = cfg_for(tmp_path)
    model, tok = tiny_model("llama"), byte_tokenizer()
    direct = ModelSource(model, tok, cfg)
    assert direct.d_in == [32, 32]
    cache = CachedSource(cfg.activation_cache, cfg, lambda: ModelSource(model, tok, cfg))
    n = cache.ensure(cfg.total_tokens, cfg.batch_size)
    assert n >= 2
    manifest = json.loads((tmp_path / "cache" / MANIFEST).read_text())
    assert manifest["hooks"] == HOOKS
    assert len(manifest["shards"]) == n
    for i in (0, 1):
        want = direct.block(i)
        assert 470 < want[0].shape[0] < 512 - 16  # 16 windows: every window's BOS and separators excluded
        for got, ref in zip(CachedSource(cfg.activation_cache, cfg).block(i), want, strict=True):
            assert torch.equal(got, ref)
    for got, ref in zip(
        CachedSource(cfg.activation_cache, cfg).eval_block(), direct.eval_block(), strict=True
    ):
        assert torch.equal(got, ref)
    # truncate shard 1: detected on open, unreadable without a model, rebuilt with one
    shard = tmp_path / "cache" / manifest["shards"][1]["file"]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert CachedSource(cfg.activation_cache, cfg).damaged == {1}
    with pytest.raises(FormatError, match="truncated"):
        CachedSource(cfg.activation_cache, cfg).block(1)
    calls = []
    rebuilt = CachedSource(cfg.activation_cache, cfg, lambda: calls.append(1) or ModelSource(model, tok, cfg))
    for got, ref in zip(rebuilt.block(1), direct.block(1), strict=True):
        assert torch.equal(got, ref)
    assert calls == [1]
    assert CachedSource(cfg.activation_cache, cfg).damaged == set()
    with pytest.raises(ConfigError, match="context_size=32") as err:
        CachedSource(cfg.activation_cache, cfg.replace(context_size=16))
    assert err.value.field == "context_size"


def test_cli_trains_from_a_config_file_and_pushes_the_run(tmp_path, hub_server):
    model_dir = tmp_path / "model"
    tiny_model("llama").save_pretrained(model_dir)
    byte_tokenizer().save_pretrained(model_dir)
    cfg = cfg_for(tmp_path, model=str(model_dir), architecture="batchtopk", log_every=4, checkpoint_every=6)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    for hook in HOOKS:
        sae = SAE.from_pretrained(run / "saes" / hook)
        assert sae.cfg.architecture == "batchtopk"
        assert sae.cfg.provenance.hook == hook
        assert sae.cfg.provenance.model == str(model_dir)
        metrics = json.loads((run / "saes" / hook / "metrics.json").read_text())
        assert 0 < metrics["fvu"] < 1.5
        assert metrics["training_tokens"] == 128 * 12
    logged = [json.loads(line) for line in (run / "logs" / "sae" / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["config"]["architecture"] == "batchtopk"
    steps = [r["step"] for r in logged[1:]]
    assert steps == [4, 8, 12]
    assert all({"loss", "l0", "dead_pct", "tokens_per_s"} <= r.keys() for r in logged[1:])
    # resuming a finished run changes nothing and trains no further step
    assert main(["train", str(path), "--resume"]) == 0
    assert main(["push", str(run), "tester/tiny-run"]) == 0
    for hook in HOOKS:
        pushed = SAE.from_pretrained("tester/tiny-run", hook)
        assert torch.equal(pushed.W_dec, SAE.from_pretrained(run / "saes" / hook).W_dec)


def test_a_run_longer_than_its_text_goes_round_again_without_the_held_out_windows(tmp_path):
    """Blocks past the end of the text repeat the first pass; the held-out head is in no pass."""
    text = "\n\n".join(f"Paragraph {i}: a short text, read again." for i in range(32))  # ~41 windows
    (tmp_path / "short.txt").write_text(text)
    cfg = cfg_for(tmp_path, dataset=str(tmp_path / "short.txt"), hooks=HOOKS[:1], eval_tokens=64)
    model, tok = tiny_model("llama"), byte_tokenizer()
    source = ModelSource(model, tok, cfg)
    held_out = tok.decode(source.held_out_with_ids()[1])
    assert held_out.startswith("Paragraph 0:")
    blocks = [source.block_with_ids(i) for i in range(4)]
    assert source.epoch_blocks == 3  # blocks of 16 windows: 16 + 16 + the text's short tail
    assert "Paragraph 30:" in tok.decode(blocks[2][1])  # the last whole window
    assert blocks[2][0][0].shape[0] < 256 < blocks[0][0][0].shape[0]
    assert torch.equal(blocks[3][0][0], blocks[0][0][0])  # block 3 is block 0 again
    assert not any("Paragraph 0:" in tok.decode(ids) for _, ids in blocks)
    # a cache of a longer run stores one pass, and reads back what the model gives
    cache = CachedSource(cfg.activation_cache, cfg, lambda: ModelSource(model, tok, cfg))
    assert cache.ensure(10_000, 64) == 3
    assert json.loads((tmp_path / "cache" / MANIFEST).read_text())["epoch_blocks"] == 3
    read_only = CachedSource(cfg.activation_cache, cfg)
    for i in range(7):
        assert torch.equal(read_only.block(i)[0], blocks[i % 3][0][0])
    # and a run over it trains (the short last block, 7 windows, cannot fill a batch of 256: it is skipped)
    sae = train(cfg.replace(batch_size=256, total_tokens=256 * 6, eval_texts=0), model=model, tokenizer=tok)
    assert sae.cfg.provenance.extra["metrics"]["training_tokens"] == 256 * 6

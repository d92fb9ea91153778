"""Training through faults: SIGKILL at random moments (some inside a checkpoint write) then resume,
a full disk during a checkpoint, and damaged activation-cache shards."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from sae_hub import SAE
from sae_hub.errors import FormatError
from sae_hub.train import TrainConfig, train
from sae_hub.train.activations import TensorSource
from sae_hub.train.cache import CachedSource
from sae_hub.train.checkpoint import LATEST, latest_checkpoint, load_checkpoint

CHILD = textwrap.dedent(
    """
    import sys, torch
    from sae_hub.train import TrainConfig, train
    from sae_hub.train.activations import TensorSource
    torch.set_num_threads(1)
    x = torch.randn(8192, 32, generator=torch.Generator().manual_seed(0)) * 2 + 0.5
    src = TensorSource(x, block_tokens=2048, eval_tokens=1024, hooks=["h"])
    cfg = TrainConfig(model=None, hooks=["h"], architecture="topk", d_sae=512, k=4, batch_size=128,
                      total_tokens=128 * 48, buffer_tokens=2048, eval_tokens=1024, checkpoint_every=2,
                      output_dir=sys.argv[1], log_every=8, seed=5)
    train(cfg, source=src, resume=True)
    """
)


def child(out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out)], env=env, stderr=subprocess.PIPE, text=True
    )


def final_tensors(out: Path) -> dict[str, torch.Tensor]:
    (folder,) = [p for p in (out / "saes").iterdir() if p.is_dir()]
    return SAE.from_pretrained(folder).state_tensors()


def assert_checkpoints_sound(root: Path) -> int:
    """Every published checkpoint loads with finite tensors and `latest` names one; return its step."""
    for folder in sorted(root.glob("step_*")):
        tensors, state = load_checkpoint(folder)
        assert state["step"] == int(folder.name.removeprefix("step_"))
        assert all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())
    latest = latest_checkpoint(root)
    if (root / LATEST).is_file():
        assert latest is not None, "latest points at a folder that is not a complete checkpoint"
    return 0 if latest is None else load_checkpoint(latest)[1]["step"]


def kill_when(proc: subprocess.Popen, root: Path, *, delay: float | None, deadline: float = 120) -> str:
    """SIGKILL the child after `delay` seconds, or (delay None) as soon as a checkpoint is being written."""
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < deadline:
        writing = root.is_dir() and any(p.name.startswith(".step_") for p in root.iterdir())
        due = writing if delay is None else time.monotonic() - start >= delay
        if due:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return "mid-write" if writing else "between writes"
        time.sleep(0.001)
    proc.wait()
    return "finished"


@pytest.mark.slow
def test_random_sigkills_then_resume_equal_an_uninterrupted_run(tmp_path):
    straight = child(tmp_path / "straight")
    assert straight.wait(timeout=300) == 0, straight.stderr.read()[-2000:]
    reference = final_tensors(tmp_path / "straight")

    out, root = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
    rng = random.Random(1234)
    outcomes = []
    for delay in (None, rng.uniform(2.0, 4.0), None):
        outcomes.append(kill_when(child(out), root, delay=delay))
        assert_checkpoints_sound(root)
        if outcomes[-1] == "finished":
            break
    assert "mid-write" in outcomes, outcomes
    last = child(out)
    assert last.wait(timeout=300) == 0, last.stderr.read()[-2000:]
    assert assert_checkpoints_sound(root) == 48
    assert not [p for p in root.iterdir() if p.name.startswith(".step_")]
    resumed = final_tensors(out)
    assert resumed.keys() == reference.keys()
    for name in reference:
        assert torch.equal(resumed[name], reference[name]), name


# ---- disk full during a checkpoint ---------------------------------------------------------------


def small_run(out: Path, **kw) -> TrainConfig:
    base = dict(model=None, hooks=["h"], architecture="topk", d_sae=1024, k=4, batch_size=128,
                total_tokens=128 * 12, buffer_tokens=2048, eval_tokens=1024, checkpoint_every=4,
                keep_checkpoints=2, output_dir=str(out), log_every=4, seed=5)  # fmt: skip
    return TrainConfig(**(base | kw))


def small_source() -> TensorSource:
    x = torch.randn(4096, 32, generator=torch.Generator().manual_seed(1))
    return TensorSource(x, block_tokens=2048, eval_tokens=1024, hooks=["h"])


@contextlib.contextmanager
def tmpfs(path: Path, size: int):
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_during_a_checkpoint_is_a_clear_error_and_keeps_the_previous_one(tmp_path):
    torch.set_num_threads(1)
    probe = tmp_path / "probe"
    train(small_run(probe, total_tokens=128 * 4), source=small_source())
    one = sum(f.stat().st_size for f in (probe / "checkpoints" / "step_000000004").iterdir())
    # room for two checkpoints (keep=2) but not a third: the write of step 12 runs out of space
    with tmpfs(tmp_path / "disk", int(one * 2.6) // 4096 * 4096) as disk:
        with pytest.raises(OSError, match="No space left") as info:
            train(small_run(disk / "run"), source=small_source())
        root = disk / "run" / "checkpoints"
        message = str(info.value)
        assert info.value.errno == errno.ENOSPC, message
        assert "step_000000012" in message or str(root) in message, message
        assert assert_checkpoints_sound(root) == 8
        assert not [p for p in root.iterdir() if p.name.startswith(".step_")]
        good = {k: v.clone() for k, v in load_checkpoint(latest_checkpoint(root))[0].items()}
    assert good["model.members.0.sae.W_enc"].shape == (32, 1024)


# ---- damaged activation cache shards -------------------------------------------------------------

TEXT = "\n\n".join(
    f"Paragraph {i}: a cache shard must be whole or rebuilt, never half used." for i in range(60)
)


@pytest.fixture
def built_cache(tmp_path):
    """A two-hook activation cache built from a tiny model; (cfg, make_source, shard 1 path, its bytes, block 1)."""
    from fixtures.tiny_models import byte_tokenizer, tiny_model

    from sae_hub.train.activations import ModelSource

    torch.set_num_threads(1)
    (tmp_path / "text.txt").write_text(TEXT)
    cfg = TrainConfig(model=None, hooks=["blocks.0.hook_resid_post"], dataset=str(tmp_path / "text.txt"),
                      context_size=32, d_sae=64, k=4, batch_size=128, total_tokens=128 * 8, buffer_tokens=512,
                      eval_tokens=256, model_batch_size=4, activation_cache=str(tmp_path / "cache"),
                      output_dir=str(tmp_path / "run"))  # fmt: skip
    model, tok = tiny_model("llama"), byte_tokenizer()
    calls: list[int] = []

    def make():
        calls.append(1)
        return ModelSource(model, tok, cfg)

    cache = CachedSource(cfg.activation_cache, cfg, make)
    cache.ensure(cfg.total_tokens, cfg.batch_size)
    shard = tmp_path / "cache" / "shard_00001.safetensors"
    calls.clear()
    return cfg, make, calls, shard, shard.read_bytes(), [t.clone() for t in cache.block(1)]


def _damage(shard: Path, good: bytes, how: str) -> None:
    if how == "truncated":
        shard.write_bytes(good[: len(good) // 2])
    elif how == "deleted":
        shard.unlink()
    elif how == "header-rows-changed":  # same size, but the header's rows disagree with the manifest
        n = int.from_bytes(good[:8], "little")
        header = good[8 : 8 + n].decode()
        rows = header.split('"token_ids":{"dtype":"I64","shape":[')[1].split("]")[0]
        shorter = str(int(rows) - 1).rjust(len(rows))
        shard.write_bytes(
            good[:8] + header.replace(f'"shape":[{rows}]', f'"shape":[{shorter}]').encode() + good[8 + n :]
        )
    else:  # "grown": garbage appended
        shard.write_bytes(good + b"\0" * 64)


@pytest.mark.parametrize("how", ["truncated", "deleted", "header-rows-changed", "grown"])
def test_damaged_cache_shard_is_detected_and_rebuilt(built_cache, how):
    cfg, make, calls, shard, good, block = built_cache
    _damage(shard, good, how)
    assert CachedSource(cfg.activation_cache, cfg).damaged == {1}
    with pytest.raises(FormatError, match="damaged") as info:  # read-only: refused, not silently used
        CachedSource(cfg.activation_cache, cfg).block(1)
    assert "shard_00001" in str(info.value)
    rebuilt = CachedSource(cfg.activation_cache, cfg, make)
    for got, want in zip(rebuilt.block(1), block, strict=True):
        assert torch.equal(got, want)
    assert calls == [1]
    assert shard.read_bytes() == good
    assert CachedSource(cfg.activation_cache, cfg).damaged == set()

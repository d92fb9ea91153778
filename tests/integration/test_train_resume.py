"""Checkpoints: exact resume, refusal of a mismatched config, and safety when killed mid-write."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from sae_hub.errors import CheckpointMismatchError
from sae_hub.train import TrainConfig, train
from sae_hub.train.activations import TensorSource
from sae_hub.train.checkpoint import LATEST, latest_checkpoint, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def source() -> TensorSource:
    x = torch.randn(12_288, 24, generator=torch.Generator().manual_seed(0)) * 2 + 1
    return TensorSource(x, block_tokens=2048, eval_tokens=2048, hooks=["h"])


def config(out: Path, arch: str, **kw) -> TrainConfig:
    base = dict(model=None, hooks=["h"], architecture=arch, d_sae=64, k=4, batch_size=256, total_tokens=256 * 24,
                buffer_tokens=2048, eval_tokens=2048, warmup_steps=5, dead_after_tokens=1024, checkpoint_every=12,
                output_dir=str(out), log_every=4, seed=3)  # fmt: skip
    return TrainConfig(**(base | kw))


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu"])
def test_n_steps_resume_n_steps_equals_2n_straight(arch, tmp_path):
    straight = train(config(tmp_path / "a", arch), source=source())
    # a run that stopped after step 12: only the first checkpoint exists
    ckpts = tmp_path / "b" / "checkpoints"
    ckpts.mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step_000000012", ckpts / "step_000000012")
    (ckpts / LATEST).write_text("step_000000012\n")
    resumed = train(config(tmp_path / "b", arch), source=source(), resume=True)
    a, b = straight.state_tensors(), resumed.state_tensors()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # and the half-way state really differs from the end (the resumed run did train)
    tensors, state = load_checkpoint(ckpts / "step_000000012")
    assert state["step"] == 12
    assert state["buffer"] == {"block": 1, "batch": 4}
    assert not torch.equal(tensors["model.members.0.sae.W_dec"], load_checkpoint(
        latest_checkpoint(tmp_path / "a" / "checkpoints"))[0]["model.members.0.sae.W_dec"])  # fmt: skip


def test_resume_with_another_architecture_is_refused(tmp_path):
    train(config(tmp_path, "topk", total_tokens=256 * 12), source=source())
    with pytest.raises(CheckpointMismatchError, match="architecture"):
        train(config(tmp_path, "batchtopk", total_tokens=256 * 12), source=source(), resume=True)


CHILD = textwrap.dedent(
    """
    import sys, torch
    from sae_hub.train import TrainConfig, train
    from sae_hub.train.activations import TensorSource
    torch.set_num_threads(1)
    x = torch.randn(12_288, 64, generator=torch.Generator().manual_seed(0))
    src = TensorSource(x, block_tokens=2048, eval_tokens=2048, hooks=["h"])
    cfg = TrainConfig(model=None, hooks=["h"], architecture="topk", d_sae=2048, k=4, batch_size=64,
                      total_tokens=64 * 60, buffer_tokens=2048, eval_tokens=2048, checkpoint_every=1,
                      output_dir=sys.argv[1], log_every=50)
    train(cfg, source=src, resume=True)
    """
)


@pytest.mark.slow
def test_kill_during_checkpoint_write_leaves_the_previous_one_usable(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], env=env)
    root = out / "checkpoints"
    caught_mid_write = False
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if (root / LATEST).is_file() and any(p.name.startswith(".step_") for p in root.iterdir()):
                child.send_signal(signal.SIGKILL)  # a temporary checkpoint folder is being written
                caught_mid_write = True
                break
            time.sleep(0.0005)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert caught_mid_write, "the child finished before a checkpoint write could be interrupted"
    folder = latest_checkpoint(root)
    assert folder is not None
    tensors, state = load_checkpoint(folder)
    assert state["step"] >= 1
    assert tensors["model.members.0.sae.W_enc"].shape == (64, 2048)
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    # the run resumes from it and finishes; the leftover temporary folder is cleaned up
    rerun = subprocess.run([sys.executable, "-c", CHILD, str(out)], env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert load_checkpoint(latest_checkpoint(root))[1]["step"] == 60
    assert not [p for p in root.iterdir() if p.name.startswith(".step_")]

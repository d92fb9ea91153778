"""Two processes (accelerate launch, gloo on CPU) train the same SAE as one process with the same global batch.

`accelerate launch --cpu` runs a single process; `--multi_gpu` with `cpu=True` in the config starts
torchrun workers that accelerate sets up as MULTI_CPU (gloo).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from sae_hub import SAE

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from sae_hub.train import TrainConfig, train
    from sae_hub.train.activations import TensorSource
    torch.set_num_threads(1)
    x = torch.randn(10_240, 24, generator=torch.Generator().manual_seed(0)) * 2 + 1
    src = TensorSource(x, block_tokens=2048, eval_tokens=2048, hooks=["h"])
    cfg = TrainConfig(model=None, hooks=["h"], architecture="topk", d_sae=64, k=4, batch_size=256,
                      total_tokens=256 * 30, buffer_tokens=2048, eval_tokens=2048, warmup_steps=5,
                      dead_after_tokens=1024, output_dir=sys.argv[1], log_every=10, cpu=True)
    train(cfg, source=src)
    from accelerate import PartialState
    print("processes", PartialState().num_processes, "rank", PartialState().process_index)
    """
)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    accelerate = shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("the accelerate launcher is not on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port]  # fmt: skip
    two = subprocess.run([*launch, str(script), str(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    a = SAE.from_pretrained(tmp_path / "one" / "saes" / "h")
    b = SAE.from_pretrained(tmp_path / "two" / "saes" / "h")
    for name, t in a.state_tensors().items():
        torch.testing.assert_close(b.state_tensors()[name], t, rtol=1e-4, atol=1e-5, msg=name)
    assert "processes 2 rank 0" in two.stdout, two.stdout
    assert "processes 2 rank 1" in two.stdout, two.stdout
    assert a.cfg.provenance.extra["metrics"]["fvu"] == pytest.approx(
        b.cfg.provenance.extra["metrics"]["fvu"], rel=1e-3
    )

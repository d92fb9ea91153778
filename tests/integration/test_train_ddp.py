"""Two processes (accelerate launch, gloo on CPU) train the same SAE as one process with the same global batch,
replicated (DDP) or sharded (FSDP2), and a sharded run resumes from its checkpoint.

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
from pathlib import Path

import pytest
import torch

from sae_hub import SAE
from sae_hub.train.checkpoint import load_checkpoint

SCRIPT = textwrap.dedent(
    """
    import logging, sys, torch
    logging.basicConfig(level=logging.INFO)
    from sae_hub.train import TrainConfig, train
    from sae_hub.train.activations import TensorSource
    out, parallelism, architecture, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "resume"
    torch.set_num_threads(1)
    x = torch.randn(10_240, 24, generator=torch.Generator().manual_seed(0)) * 2 + 1
    src = TensorSource(x, block_tokens=2048, eval_tokens=2048, hooks=["h"])
    cfg = TrainConfig(model=None, hooks=["h"], architecture=architecture, d_sae=64, k=4, batch_size=256,
                      total_tokens=256 * 30, buffer_tokens=2048, eval_tokens=2048, warmup_steps=5,
                      dead_after_tokens=1024, output_dir=out, log_every=10, cpu=True,
                      parallelism=parallelism, checkpoint_every=15)
    train(cfg, source=src, resume=resume)
    from accelerate import PartialState
    print(f"processes {PartialState().num_processes} rank {PartialState().process_index}", flush=True)  # one write
    """
)


LIVE_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from fixtures.tiny_models import byte_tokenizer, tiny_model
    from sae_hub.train import TrainConfig, train
    torch.set_num_threads(1)
    cfg = TrainConfig(model=None, hooks=["blocks.1.hook_resid_post"], dataset=sys.argv[2], context_size=32,
                      d_sae=64, k=4, batch_size=128, total_tokens=128 * 10, buffer_tokens=512, eval_tokens=256,
                      model_batch_size=4, warmup_steps=2, eval_texts=0, output_dir=sys.argv[1], cpu=True)
    train(cfg, model=tiny_model("llama"), tokenizer=byte_tokenizer())
    from accelerate import PartialState
    print(f"processes {PartialState().num_processes} rank {PartialState().process_index}", flush=True)  # one write
    """
)


def _run(
    tmp_path: Path, processes: int, *args: str, script_text: str = SCRIPT
) -> subprocess.CompletedProcess[str]:
    """Run a script in one process, or in several under `accelerate launch`; fail with its stderr."""
    script = tmp_path / "run.py"
    script.write_text(script_text)
    tests = str(Path(__file__).resolve().parents[1])
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])
    )
    command = [sys.executable, str(script), *args]
    if processes > 1:
        accelerate = shutil.which("accelerate")
        if accelerate is None:
            pytest.skip("the accelerate launcher is not on PATH")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = str(sock.getsockname()[1])
        command = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
                   str(script), *args]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    if processes > 1:
        for rank in range(processes):
            assert f"processes {processes} rank {rank}" in done.stdout, done.stdout
    return done


def _assert_same(a: SAE, b: SAE) -> None:
    for name, t in a.state_tensors().items():
        torch.testing.assert_close(b.state_tensors()[name], t, rtol=1e-4, atol=1e-5, msg=name)
    assert a.cfg.provenance.extra["metrics"]["fvu"] == pytest.approx(
        b.cfg.provenance.extra["metrics"]["fvu"], rel=1e-3
    )


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    _run(tmp_path, 2, str(tmp_path / "two"), "ddp", "topk", "fresh")
    _run(tmp_path, 1, str(tmp_path / "one"), "ddp", "topk", "fresh")
    _assert_same(
        SAE.from_pretrained(tmp_path / "one" / "saes" / "h"),
        SAE.from_pretrained(tmp_path / "two" / "saes" / "h"),
    )


@pytest.mark.slow
def test_fsdp_shards_match_one_process_and_resume(tmp_path):
    """TopK under FSDP2: sharded weights and Adam moments, gathered checkpoints, a sharded restore."""
    one, two = tmp_path / "one", tmp_path / "two"
    _run(tmp_path, 1, str(one), "fsdp", "topk", "fresh")
    assert (
        "FSDP: every SAE sharded across 2 processes"
        in _run(tmp_path, 2, str(two), "fsdp", "topk", "fresh").stderr
    )
    reference = SAE.from_pretrained(one / "saes" / "h")
    _assert_same(reference, SAE.from_pretrained(two / "saes" / "h"))
    # the sharded run's checkpoints hold full tensors: the one at step 15 matches the single process's
    sharded, _ = load_checkpoint(two / "checkpoints" / "step_000000015")
    single, _ = load_checkpoint(one / "checkpoints" / "step_000000015")
    assert sharded.keys() == single.keys()
    for name, t in single.items():
        if name != "rng.torch":
            torch.testing.assert_close(sharded[name], t, rtol=1e-4, atol=1e-5, msg=name)
    # resume the sharded run from step 15: weights and Adam moments are laid out as shards again
    (two / "checkpoints" / "latest").write_text("step_000000015\n")
    shutil.rmtree(two / "saes")
    _run(tmp_path, 2, str(two), "fsdp", "topk", "resume")
    _assert_same(reference, SAE.from_pretrained(two / "saes" / "h"))


@pytest.mark.slow
def test_fsdp_batchtopk_matches_ddp(tmp_path):
    """BatchTopK selects over each rank's share of the batch, so two processes are compared with two: its
    threshold is an EMA statistic on a frozen parameter, updated in place on the shards."""
    _run(tmp_path, 2, str(tmp_path / "ddp"), "ddp", "batchtopk", "fresh")
    _run(tmp_path, 2, str(tmp_path / "fsdp"), "fsdp", "batchtopk", "fresh")
    ddp = SAE.from_pretrained(tmp_path / "ddp" / "saes" / "h")
    _assert_same(ddp, SAE.from_pretrained(tmp_path / "fsdp" / "saes" / "h"))
    assert float(ddp.threshold.detach().min()) > 0


@pytest.mark.slow
def test_live_activations_two_processes_match_one(tmp_path):
    """No cache: each rank runs the model over its share of every block's windows and the rows are gathered
    (ranks keep different row counts once special tokens are dropped), so both runs train on the same rows."""
    text = tmp_path / "text.txt"
    text.write_text(
        "\n\n".join(f"Document {i}: the residual stream at layer one, read by an SAE." for i in range(80))
    )
    _run(tmp_path, 2, str(tmp_path / "two"), str(text), script_text=LIVE_SCRIPT)
    _run(tmp_path, 1, str(tmp_path / "one"), str(text), script_text=LIVE_SCRIPT)
    hook = "blocks.1.hook_resid_post"
    _assert_same(
        SAE.from_pretrained(tmp_path / "one" / "saes" / hook),
        SAE.from_pretrained(tmp_path / "two" / "saes" / hook),
    )

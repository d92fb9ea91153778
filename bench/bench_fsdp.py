"""Memory per process under DDP and FSDP: two CPU processes (gloo) train the same wide TopK SAEs.

    python bench/bench_fsdp.py [--hooks 4] [--d-sae 32768] [--steps 8] [--out bench/results/fsdp.json]

DDP keeps a full copy of every SAE's weights, gradients and Adam moments on every rank; FSDP
(`parallelism: fsdp`) keeps 1/world of each between steps and gathers one SAE's weights (and gradients)
only while that SAE runs. A run with several hooks trains one SAE per hook, so the saving grows with the
number of SAEs and of processes. The script reports each rank's peak RSS and the wall time, same config
and data, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WORKER = textwrap.dedent(
    """
    import json, resource, sys, time, torch
    from accelerate import PartialState
    from sae_hub.train import TrainConfig, train
    from sae_hub.train.activations import TensorSource
    out, parallelism, hooks, d_sae, steps = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    batch, names = 1024, [f"h{i}" for i in range(hooks)]
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(batch * (steps + 1), 576, generator=gen) for _ in names]
    src = TensorSource(xs, block_tokens=batch * steps, eval_tokens=batch, hooks=names)
    cfg = TrainConfig(model=None, hooks=names, architecture="topk", d_sae=d_sae, k=32, batch_size=batch,
                      total_tokens=batch * steps, buffer_tokens=batch * steps, eval_tokens=batch, warmup_steps=1,
                      output_dir=out, log_every=steps, cpu=True, parallelism=parallelism)
    start = time.perf_counter()
    train(cfg, source=src)
    seconds = time.perf_counter() - start
    state = PartialState()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT", json.dumps({"rank": state.process_index, "peak_rss_mib": peak_mib, "seconds": seconds}))
    """
)


def run(parallelism: str, hooks: int, d_sae: int, steps: int, work: Path) -> dict[str, float]:
    """Launch two processes; return the larger peak RSS of the two ranks and the wall time."""
    script = work / "worker.py"
    script.write_text(WORKER)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    accelerate = shutil.which("accelerate") or sys.exit("the accelerate launcher is not on PATH")
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
               str(script), str(work / parallelism), parallelism, str(hooks), str(d_sae), str(steps)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    ranks = [
        json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("RESULT")
    ]
    return {
        "peak_rss_mib_per_rank": max(r["peak_rss_mib"] for r in ranks),
        "train_seconds": max(r["seconds"] for r in ranks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hooks", type=int, default=4, help="SAEs trained side by side")
    parser.add_argument("--d-sae", type=int, default=32_768)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default="bench/results/fsdp.json")
    args = parser.parse_args()
    weights_mib = args.hooks * 2 * args.d_sae * 576 * 4 / 2**20
    results: dict[str, object] = {"hooks": args.hooks, "d_sae": args.d_sae, "d_in": 576, "processes": 2,
                                  "steps": args.steps, "weights_mib_all_saes": weights_mib}  # fmt: skip
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for parallelism in ("ddp", "fsdp"):
            runs[parallelism] = run(parallelism, args.hooks, args.d_sae, args.steps, Path(tmp))
            print(parallelism, runs[parallelism])
    results |= runs
    results["rss_ratio_fsdp_to_ddp"] = (
        runs["fsdp"]["peak_rss_mib_per_rank"] / runs["ddp"]["peak_rss_mib_per_rank"]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

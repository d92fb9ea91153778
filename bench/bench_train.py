"""Training benchmarks: real SmolLM2-135M-Instruct activations, every architecture, speed against SAELens.

    python bench/bench_train.py [--tokens 32768] [--out bench/results/train.json]
    python bench/bench_train.py --only quality --config sae_hub/assets/starter/train.yaml --tokens 163840

With `--config`, the quality runs take the corpus, activation cache and settings (width, batch, AuxK)
of that training config, e.g. the starter SAE's, so they reuse its cached activations (run from the folder
the config's relative paths are meant for, the project root for the starter).

1. Text: English documentation available offline (Python's `pydoc_data.topics` plus the docstrings of
   the standard library, numpy and torch), written once to `<work>/corpus.txt`.
2. Activation generation: `capture_activations` with the early stop vs a full forward, same windows.
3. A disk cache of the residual stream at `blocks.15.hook_resid_post` (layer 15 of 30), built once.
4. Quality: TopK, BatchTopK, JumpReLU, ReLU+L1 and Matryoshka on the same tokens at L0 ~ 32:
   FVU, L0 and dead % on held-out tokens.
5. Throughput on identical cached activations (TopK, k=32, 8192 latents, d_in 576, fp32, CPU):
   sae_hub's trainer vs SAELens's `SAETrainer`, tokens per second of the training loop.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import time
from pathlib import Path

import torch

HOOK = "blocks.15.hook_resid_post"
MODULES = [
    "collections",
    "itertools",
    "functools",
    "os",
    "re",
    "json",
    "string",
    "textwrap",
    "typing",
    "asyncio",
    "email",
    "http.client",
    "logging",
    "argparse",
    "unittest",
    "decimal",
    "datetime",
    "pathlib",
    "subprocess",
    "threading",
    "multiprocessing",
    "socket",
    "ssl",
    "sqlite3",
    "xml.etree.ElementTree",
    "urllib.request",
    "csv",
    "zipfile",
    "tarfile",
    "shutil",
    "tempfile",
    "random",
    "statistics",
    "math",
    "inspect",
    "ast",
    "dis",
    "io",
    "codecs",
    "locale",
    "gettext",
    "heapq",
    "bisect",
    "array",
    "struct",
    "enum",
    "dataclasses",
    "contextlib",
    "abc",
    "numbers",
    "fractions",
    "hashlib",
    "hmac",
    "secrets",
    "time",
    "calendar",
    "difflib",
    "pprint",
    "reprlib",
    "copy",
    "weakref",
    "types",
    "operator",
    "glob",
    "fnmatch",
    "linecache",
    "tokenize",
    "traceback",
    "warnings",
    "queue",
    "sched",
    "selectors",
    "signal",
    "zlib",
    "gzip",
    "bz2",
    "lzma",
    "configparser",
    "optparse",
    "getopt",
    "shlex",
    "cmd",
    "doctest",
    "pdb",
    "timeit",
    "trace",
    "pstats",
    "platform",
    "sysconfig",
    "venv",
    "importlib",
    "numpy",
    "numpy.linalg",
    "numpy.random",
    "numpy.fft",
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "torch.optim",
]


def build_corpus(path: Path) -> Path:
    """Write the English documentation corpus (one document per topic or docstring, blank-line separated)."""
    if path.is_file():
        return path
    import pydoc_data.topics
    import warnings

    docs: dict[str, None] = dict.fromkeys(pydoc_data.topics.topics.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MODULES:
            module = importlib.import_module(name)
            for attr in [None, *sorted(dir(module))]:
                obj = module if attr is None else getattr(module, attr, None)
                if attr is not None and (attr.startswith("_") or inspect.ismodule(obj)):
                    continue
                doc = inspect.getdoc(obj)
                if doc and len(doc) > 200:
                    docs[doc.replace("\n\n\n", "\n\n")] = None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(docs), encoding="utf-8")
    return path


def bench_generation(model, tokenizer, corpus: Path) -> dict[str, float]:
    """Tokens/s of capture_activations at HOOK with and without the early stop, on the same windows."""
    from sae_hub.hooks import capture_activations
    from sae_hub.train import TrainConfig
    from sae_hub.train.text import iter_windows

    cfg = TrainConfig(model=None, hooks=[HOOK], dataset=str(corpus), d_sae=8, k=1, context_size=128)
    it = iter_windows(cfg, tokenizer)
    ids = torch.tensor([next(it) for _ in range(8)])
    out = {}
    for stop in (True, False, True, False):
        start = time.perf_counter()
        for b in range(0, 8, 4):
            capture_activations(model, [HOOK], ids[b : b + 4], stop_early=stop)
        rate = ids.numel() / (time.perf_counter() - start)
        key = "early_stop_tok_s" if stop else "full_forward_tok_s"
        out[key] = max(out.get(key, 0.0), rate)
    out["speedup"] = out["early_stop_tok_s"] / out["full_forward_tok_s"]
    return out


def base_config(work: Path, corpus: Path, tokens: int, **kw):
    from sae_hub.train import TrainConfig

    return TrainConfig(
        **{
            "model": "embedded",
            "hooks": [HOOK],
            "dataset": str(corpus),
            "context_size": 128,
            "model_batch_size": 8,
            "activation_cache": str(work / "cache"),
            "buffer_tokens": 16_384,
            "eval_tokens": 4096,
            "total_tokens": tokens,
            "batch_size": 512,
            "d_sae": 2304,
            "k": 32,
            "warmup_steps": 10,
            "dead_after_tokens": 8192,
            "eval_texts": 0,
            "output_dir": str(work / "runs"),
            "log_every": 16,
            **kw,
        }
    )


QUALITY_RUNS = {  # name: (architecture, settings); the L1 and L0 coefficients are tuned for L0 ~ 32
    "topk": ("topk", {}), "batchtopk": ("batchtopk", {}), "matryoshka": ("matryoshka", {}),
    "jumprelu": ("jumprelu", {"target_l0": 32.0, "l0_coefficient": 1.0, "jumprelu_init_threshold": 0.001}),
    "jumprelu_c8": ("jumprelu", {"target_l0": 32.0, "l0_coefficient": 8.0, "jumprelu_init_threshold": 0.001}),
    "relu_l1_0.06": ("relu_l1", {"l1_coefficient": 0.06, "sparsity_warmup_steps": 50}),
    "relu_l1_0.08": ("relu_l1", {"l1_coefficient": 0.08, "sparsity_warmup_steps": 50}),
    "relu_l1_0.1": ("relu_l1", {"l1_coefficient": 0.1, "sparsity_warmup_steps": 50}),
    "relu_l1_0.12": ("relu_l1", {"l1_coefficient": 0.12, "sparsity_warmup_steps": 50}),
    "relu_l1_0.15": ("relu_l1", {"l1_coefficient": 0.15, "sparsity_warmup_steps": 50}),
}  # fmt: skip


class HeldOutShards:
    """A complete activation cache split for the quality runs: the last shard (the text's tail) joins the
    eval shard (its head) as held-out tokens; the other shards are cycled (each pass reshuffled) for as many
    tokens as a run asks. A format-2 cache never stores a second pass, so no held-out row is trained on."""

    def __init__(self, cfg) -> None:
        from sae_hub.train.cache import CachedSource

        self.cache = CachedSource(cfg.activation_cache, cfg, None)
        self.hooks, self.d_in = self.cache.hooks, self.cache.d_in
        self.n_train = len(self.cache.manifest["shards"]) - 1
        if self.n_train < 1:
            raise SystemExit(f"{cfg.activation_cache}: build the cache first (sae-hub train CONFIG)")

    def block(self, index: int) -> list[torch.Tensor]:
        return self.cache.block(index % self.n_train)

    def eval_block(self) -> list[torch.Tensor]:
        pairs = zip(self.cache.eval_block(), self.cache.block(self.n_train), strict=True)
        return [torch.cat(pair) for pair in pairs]


@torch.no_grad()
def threshold_at_k(sae, sample: torch.Tensor, k: int) -> None:
    """Set a BatchTopK SAE's constant threshold by the batch rule on one large batch: the smallest of the
    k * N largest activations of `sample [N, d_in]`, so that L0 is k on average over the sample."""
    sae.threshold.zero_()
    acts = sae.encode(sample.to(sae.dtype)).flatten()
    sae.threshold.fill_(float(torch.topk(acts, k * sample.shape[0]).values.min()))


def bench_quality(
    work: Path, corpus: Path, tokens: int, config: Path | None, runs: list[str]
) -> dict[str, dict[str, float]]:
    """Train every architecture on the same cached tokens; held-out FVU, L0, dead %."""
    from sae_hub.train import TrainConfig, train

    results = {}
    for name in runs:
        arch, extra = QUALITY_RUNS[name]
        out_dir = str(work / "runs" / name)
        source = None
        if config is None:
            cfg = base_config(work, corpus, tokens, architecture=arch, output_dir=out_dir, **extra)
        else:
            cfg = TrainConfig.load(config).replace(
                total_tokens=tokens, architecture=arch, output_dir=out_dir, eval_texts=0, **extra
            )
            source = HeldOutShards(cfg)
        start = time.perf_counter()
        sae = train(cfg, source=source)
        m = dict(sae.cfg.provenance.extra["metrics"])
        m["train_seconds"] = time.perf_counter() - start
        results[name] = m
        print(name, json.dumps(m))
        if source is not None and arch in ("batchtopk", "matryoshka"):
            # the same SAE at exactly TopK's L0 on the held-out tokens: one scalar, chosen on them
            from sae_hub.train.evaluation import activation_metrics

            held_out = source.eval_block()[0]
            threshold_at_k(sae, held_out, cfg.k)
            results[f"{name}_threshold_at_k"] = activation_metrics(sae, held_out)
            print(f"{name}_threshold_at_k", json.dumps(results[f"{name}_threshold_at_k"]))
    return results


def _cached_batches(work: Path, n_tokens: int) -> torch.Tensor:
    """`n_tokens` cached activation rows (the cached rows repeated when the cache is smaller)."""
    from sae_hub.formats._safetensors import read_safetensors

    rows = torch.cat(
        [read_safetensors(p)["acts.0"].clone() for p in sorted((work / "cache").glob("shard_*"))]
    )
    return rows.repeat(-(-n_tokens // rows.shape[0]), 1)[:n_tokens]


def bench_throughput(work: Path, steps: int = 6, batch: int = 4096) -> dict[str, float]:
    """Training-loop tokens/s, sae_hub vs SAELens, TopK k=32, 8192 latents, fp32, identical activations."""
    from sae_lens import LoggingConfig, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    from sae_hub.train import TrainConfig, train
    from sae_hub.train.activations import TensorSource

    acts = _cached_batches(work, batch * (steps + 2) + 8192)
    out: dict[str, float] = {}
    for attempt in range(2):
        cfg = TrainConfig(model=None, hooks=[HOOK], architecture="topk", d_sae=8192, k=32, batch_size=batch,
                          total_tokens=batch * steps, buffer_tokens=batch * (steps + 2), eval_tokens=8192,
                          output_dir=str(work / "throughput"), log_every=steps)  # fmt: skip
        train(
            cfg, source=TensorSource(acts, block_tokens=batch * (steps + 2), eval_tokens=8192, hooks=[HOOK])
        )
        log = (work / "throughput" / "logs" / "sae" / "metrics.jsonl").read_text().splitlines()
        out["sae_hub_tok_s"] = max(out.get("sae_hub_tok_s", 0.0), json.loads(log[-1])["tokens_per_s"])

        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=576, d_sae=8192, k=32))
        tcfg = SAETrainerConfig(total_training_samples=batch * steps, train_batch_size_samples=batch,
                                logger=LoggingConfig(log_to_wandb=False), lr=2e-4, lr_end=2e-4)  # fmt: skip
        data = iter(acts[8192 + i * batch : 8192 + (i + 1) * batch] for i in range(steps))
        trainer = SAETrainer(tcfg, sae, data)
        start = time.perf_counter()
        trainer.fit()
        out["saelens_tok_s"] = max(
            out.get("saelens_tok_s", 0.0), batch * steps / (time.perf_counter() - start)
        )
        print(attempt, out)
    out["speedup"] = out["sae_hub_tok_s"] / out["saelens_tok_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32_768, help="training tokens per architecture")
    parser.add_argument("--work", default="/tmp/sae_hub_bench_train", help="corpus, cache and runs")
    parser.add_argument("--out", default="bench/results/train.json")
    parser.add_argument("--only", nargs="*", default=["generation", "quality", "throughput"])
    parser.add_argument("--runs", nargs="*", default=list(QUALITY_RUNS), choices=list(QUALITY_RUNS))
    parser.add_argument("--config", type=Path, help="training config whose corpus, cache and settings to use")
    args = parser.parse_args()
    work = Path(args.work)
    corpus = build_corpus(work / "corpus.txt")
    results: dict[str, object] = {"hook": HOOK, "tokens": args.tokens, "threads": torch.get_num_threads()}
    out = Path(args.out)
    if out.is_file():
        results = json.loads(out.read_text()) | results
    if "generation" in args.only:
        from sae_hub.models import load_model

        model, tokenizer = load_model("embedded")
        results["generation"] = bench_generation(model, tokenizer, corpus)
        print("generation", results["generation"])
    if "quality" in args.only:
        results["quality"] = results.get("quality", {}) | bench_quality(
            work, corpus, args.tokens, args.config, args.runs
        )
        results["quality_config"] = str(args.config) if args.config else None
    if "throughput" in args.only:
        results["throughput"] = bench_throughput(work)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

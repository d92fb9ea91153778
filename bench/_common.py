"""Shared helpers for the bench/ scripts: machine description, median timing, fresh-process runs, RSS, output.

The API is deliberately small:

- `machine()` -> one line naming the CPU, core count, torch version and threads.
- `median_times({name: fn}, repeat=5, warmup=1)` -> {name: median seconds}; the functions run in
  interleaved rounds, so load from other processes hits every contender alike.
- `run_child(code, *args, env=None, timeout=600)` -> the JSON object that `code` printed last, run in a
  fresh interpreter (`sys.argv[1:]` = args). Prepend `RSS_HELPERS` to `code` to get `rss_bytes()`,
  `reset_peak()` (Linux: sets the peak RSS back to the current RSS) and `peak_bytes()`.
- `write_section(heading, body)` -> replaces the body under `heading` in BENCHMARKS.md, leaving the
  other sections alone.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"

RSS_HELPERS = textwrap.dedent(
    """
    def _status(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def rss_bytes():
        return _status("VmRSS")

    def peak_bytes():
        return _status("VmHWM")

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    """
)


def machine() -> str:
    """Describe the CPU, core count, torch version and intra-op threads in one line."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )


def median_times(
    fns: dict[str, Callable[[], object]], *, repeat: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Time each function `repeat` times in interleaved rounds (after `warmup` untimed calls); return medians."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run_child(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> dict:
    """Run `code` in a fresh interpreter with `args`; return the JSON object it printed last."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_section(heading: str, body: str, *, path: Path = BENCHMARKS) -> None:
    """Replace the text under the markdown `heading` line (up to the next `## `) with `body`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        raise ValueError(f"{path} has no line {heading!r}") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    new = [*lines[: start + 1], "", *body.strip("\n").splitlines(), "", *lines[end:]]
    path.write_text("\n".join(new).rstrip("\n") + "\n", encoding="utf-8")

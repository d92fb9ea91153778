"""Load test of a running Space: N concurrent gradio_client users call `/inspect` for a bounded time.

Each user is a thread with its own `gradio_client.Client` (its own session), calling `/inspect` in a
loop until the deadline. The result (JSON on stdout) counts successes, "queue full" refusals (the
Space's queue holds 32 waiting requests; a refusal is the designed answer to overload) and any other
error (with up to five messages), plus latency percentiles of the successful calls.

    python bench/load_space.py --url http://127.0.0.1:7860 --clients 50 --seconds 60

`tests/reliability/test_space_faults.py` starts a tiny Space and runs this script against it in a second
process (a short run in CI, the full 60 s run under `-m slow`), measuring the server's RSS around it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

READ_TIMEOUT_S = 300.0
DEFAULT_TEXT = "Sparse autoencoders split a model's activations into many features, few at a time."


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_load(
    url: str, *, clients: int, seconds: float, text: str = DEFAULT_TEXT, connections: int | None = None
) -> dict[str, Any]:
    """Run the load and return counts and latencies; `connections` Clients are shared round-robin."""
    from gradio_client import Client

    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"ok": 0, "queue_full": 0, "error": 0}
    messages: list[str] = []
    stop = [float("inf")]
    t0 = time.monotonic()
    users = []
    for _ in range(connections or clients):  # users open the page first, one after another
        try:  # a browser waits on the queue's event stream; so does this client (no 5 s read timeout)
            users.append(Client(url, verbose=False, httpx_kwargs={"timeout": READ_TIMEOUT_S}))
        except Exception as exc:  # a user that cannot even connect is an error
            counts["error"] += 1
            messages.append(f"connect: {type(exc).__name__}: {exc}"[:300])
    connect_s = time.monotonic() - t0

    def user(client: Any) -> None:
        while time.monotonic() < stop[0]:
            t0 = time.monotonic()
            try:
                client.predict(text, None, api_name="/inspect")
            except Exception as exc:
                kind = "queue_full" if "queue is full" in str(exc).lower() else "error"
                with lock:
                    counts[kind] += 1
                    if kind == "error" and len(messages) < 5:
                        messages.append(f"{type(exc).__name__}: {exc}"[:300])
                if kind == "queue_full":
                    time.sleep(0.05)
                continue
            with lock:
                counts["ok"] += 1
                latencies.append(time.monotonic() - t0)

    start = time.monotonic()
    stop[0] = start + seconds
    threads = [
        threading.Thread(target=user, args=(users[i % len(users)],), daemon=True) for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    return {
        "clients": clients,
        "connections": len(users),
        "seconds": seconds,
        "connect_s": round(connect_s, 2),
        "wall_s": round(wall, 2),
        **counts,
        "requests_per_s": round(counts["ok"] / wall, 2),
        "p50_ms": None if not latencies else round(1000 * statistics.median(latencies), 1),
        "p95_ms": None if not latencies else round(1000 * _percentile(latencies, 0.95), 1),
        "max_ms": None if not latencies else round(1000 * max(latencies), 1),
        "errors": messages,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the load, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the Space's URL, e.g. http://127.0.0.1:7860")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=None, help="Client objects shared by the users")
    parser.add_argument("--text", default=DEFAULT_TEXT)
    args = parser.parse_args(argv)
    print(
        json.dumps(
            run_load(
                args.url,
                clients=args.clients,
                seconds=args.seconds,
                text=args.text,
                connections=args.connections,
            )
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Switchable faults for the loopback Hub (`HubServer.faults` hooks): errors, stalls, short bodies, lies."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

from hub_server import HubRequest, HubServer


def _matches(request: HubRequest, needle: str, method: str | None) -> bool:
    return needle in request.path and (method is None or request.method == method)


def fail(
    needle: str,
    status: int,
    *,
    times: int = 1,
    method: str | None = None,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> Callable[[HubRequest], bool]:
    """Answer the first `times` matching requests with `status` (an X-Error-Code when given)."""
    left = [times]

    def fault(request: HubRequest) -> bool:
        if left[0] <= 0 or not _matches(request, needle, method):
            return False
        left[0] -= 1
        request.handler.rfile.read(
            int(request.headers.get("Content-Length") or 0)
        )  # keep-alive stays in sync
        extra = dict(headers or {})
        if code is not None:
            extra |= {"X-Error-Code": code, "X-Error-Message": f"injected {status} {code}"}
        request.handler.reply(status, {"error": f"injected HTTP {status}"}, extra)
        return True

    return fault


def stall(
    needle: str, seconds: float, *, times: int = 1, method: str | None = None
) -> Callable[[HubRequest], bool]:
    """Hold the first `times` matching requests silent for `seconds`, then drop the connection."""
    left = [times]

    def fault(request: HubRequest) -> bool:
        if left[0] <= 0 or not _matches(request, needle, method):
            return False
        left[0] -= 1
        time.sleep(seconds)
        request.handler.close_connection = True
        return True

    return fault


def short_body(
    hub: HubServer,
    repo_id: str,
    path: str,
    *,
    keep: float = 0.5,
    claim: str = "true",
    times: int = 1,
) -> Callable[[HubRequest], bool]:
    """Serve only `keep` of a file on a full GET (no Range), then close the connection.

    `claim="true"` announces the real length (the body is cut short); `claim="short"` announces the
    length actually sent, a Content-Length that disagrees with the size the HEAD request reported.
    """
    left = [times]

    def fault(request: HubRequest) -> bool:
        wanted = request.path.startswith(f"/{repo_id}/resolve/") and request.path.endswith(f"/{path}")
        if left[0] <= 0 or request.method != "GET" or not wanted or request.headers.get("Range"):
            return False
        left[0] -= 1
        with hub.lock:
            repo = hub.repos[("model", repo_id)]
            data = repo.commits[repo.refs["main"]].files[path]
        sent = data[: int(len(data) * keep)]
        handler = request.handler
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data) if claim == "true" else len(sent)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        with contextlib.suppress(OSError):
            handler.wfile.write(sent)
            handler.wfile.flush()
        handler.close_connection = True
        handler._record.status = 200
        handler._record.bytes_sent = len(sent)
        return True

    return fault


@contextlib.contextmanager
def injected(hub: HubServer, *faults: Callable[[HubRequest], bool]):
    """Install faults for the duration of a `with` block."""
    with hub.lock:
        hub.faults.extend(faults)
    try:
        yield
    finally:
        with hub.lock:
            for f in faults:
                if f in hub.faults:
                    hub.faults.remove(f)

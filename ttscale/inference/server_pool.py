"""Several OpenAI-compatible servers behind one generator (e.g. one `vllm serve` per GPU or node).

Each request goes to the least-loaded server that is not cooling down (ties in turn, round robin). A server
that fails (refused connection, dropped connection, timeout, 429/5xx) is taken out for `cooldown_s` and the
request retried on another; the pool gives up only when every server refused its last connection, or the
request's retries run out. One server is the plain single-server behaviour: it never cools down.
"""
from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Iterator, Sequence


def split_urls(base_url: str | Sequence[str]) -> list[str]:
    """URLs from 'a,b', ['a', 'b'] or ['a,b'], trailing slashes dropped, duplicates once."""
    items = [base_url] if isinstance(base_url, str) else list(base_url)
    urls = [u.strip().rstrip("/") for item in items for u in item.split(",") if u.strip()]
    if not urls:
        raise ValueError("no server URL given (--base-url)")
    return list(dict.fromkeys(urls))


@dataclass
class _Server:
    url: str
    in_flight: int = 0
    down_until: float = 0.0     # monotonic time it may be tried again
    refused: bool = False       # its last attempt could not connect at all
    last_error: str = ""


class ServerPool:
    def __init__(self, urls: Sequence[str], cooldown_s: float = 10.0):
        self.servers = [_Server(u) for u in urls]
        self.cooldown_s = float(cooldown_s)
        self._turn = itertools.count()

    def __len__(self) -> int:
        return len(self.servers)

    def pick(self) -> tuple[_Server, float]:
        """(server to use, seconds to wait first): a healthy one now, else the one back soonest."""
        now = time.monotonic()
        healthy = [s for s in self.servers if s.down_until <= now]
        if not healthy:
            soonest = min(self.servers, key=lambda s: s.down_until)
            return soonest, soonest.down_until - now
        turn = next(self._turn)
        n = len(self.servers)
        return min(healthy, key=lambda s: (s.in_flight, (self.servers.index(s) - turn) % n)), 0.0

    @contextlib.contextmanager
    def using(self, server: _Server) -> Iterator[_Server]:
        server.in_flight += 1
        try:
            yield server
        finally:
            server.in_flight -= 1

    def ok(self, server: _Server) -> None:
        server.refused, server.last_error = False, ""

    def failed(self, server: _Server, error: str, refused: bool = False) -> None:
        server.refused, server.last_error = refused, error
        if len(self.servers) > 1:   # alone, it is retried with backoff as before
            server.down_until = time.monotonic() + self.cooldown_s

    def any_healthy_besides(self, server: _Server) -> bool:
        now = time.monotonic()
        return any(s is not server and s.down_until <= now for s in self.servers)

    def all_refused(self) -> bool:
        return all(s.refused for s in self.servers)

    def describe(self) -> str:
        return "; ".join(f"{s.url}: {s.last_error or 'ok'}" for s in self.servers)

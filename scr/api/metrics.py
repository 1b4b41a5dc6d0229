"""Request counts and latencies per route, for GET /metrics (JSON, or Prometheus text format)."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field


@dataclass
class _RouteStats:
    count: int = 0
    errors: int = 0  # responses with status >= 400
    total_s: float = 0.0
    # The latest latencies, enough for stable percentiles without unbounded memory.
    recent: deque = field(default_factory=lambda: deque(maxlen=2000))
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, _RouteStats] = defaultdict(_RouteStats)

    def record(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            stats = self._routes[route]
            stats.count += 1
            stats.errors += status >= 400
            stats.total_s += seconds
            stats.recent.append(seconds)
            stats.statuses[status] += 1

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            out = {}
            for route, s in sorted(self._routes.items()):
                recent = sorted(s.recent)
                out[route] = {
                    "count": s.count, "errors": s.errors, "statuses": {str(k): v for k, v in s.statuses.items()},
                    "latency_s": {"mean": s.total_s / s.count if s.count else 0.0, "p50": _percentile(recent, 0.5),
                                  "p95": _percentile(recent, 0.95), "max": recent[-1] if recent else 0.0},
                }
            return out

    def prometheus(self, extra: dict[str, float]) -> str:
        lines = ["# TYPE scr_requests_total counter", "# TYPE scr_request_seconds summary"]
        for route, s in self.snapshot().items():
            for status, n in s["statuses"].items():
                lines.append(f'scr_requests_total{{route="{route}",status="{status}"}} {n}')
            for q in ("p50", "p95"):
                quantile = {"p50": "0.5", "p95": "0.95"}[q]
                lines.append(f'scr_request_seconds{{route="{route}",quantile="{quantile}"}} {s["latency_s"][q]:.6f}')
            lines.append(f'scr_request_seconds_count{{route="{route}"}} {s["count"]}')
            lines.append(f'scr_request_seconds_sum{{route="{route}"}} {s["latency_s"]["mean"] * s["count"]:.6f}')
        for name, value in extra.items():
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {value}")
        return "\n".join(lines) + "\n"

"""Order latency: when an order decided at ``t`` reaches the venue.

``arrival = decision_ts + base_ns + jitter`` where the jitter is zero, uniform on
``[0, jitter_ns]`` or exponential with mean ``jitter_ns``.  The jitter is never negative: the
base latency is the floor set by the network path, random delays only add to it.  The random
draw comes from a caller-owned ``numpy.random.Generator`` so that the engine can snapshot and
restore its state (event sourcing: a resumed run must draw the same numbers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

JITTER_KINDS = ("none", "uniform", "exponential")


@dataclass(frozen=True)
class LatencyModel:
    """Constant latency plus optional seeded jitter, in nanoseconds."""

    base_ns: int = 0
    jitter_ns: int = 0
    jitter: str = "none"  # none | uniform | exponential

    def __post_init__(self) -> None:
        if self.base_ns < 0 or self.jitter_ns < 0:
            raise ValueError("latencies must be non-negative")
        if self.jitter not in JITTER_KINDS:
            raise ValueError(f"jitter must be one of {JITTER_KINDS}, got {self.jitter!r}")

    @property
    def random(self) -> bool:
        return self.jitter != "none" and self.jitter_ns > 0

    def arrival_ts(self, decision_ts: int, rng: np.random.Generator | None = None) -> int:
        """Arrival time at the venue of an order decided at ``decision_ts`` (ns)."""
        return int(decision_ts) + self.base_ns + self._draw(rng)

    def arrival_ts_many(self, decision_ts: np.ndarray,
                        rng: np.random.Generator | None = None) -> np.ndarray:
        """Vectorised :meth:`arrival_ts`; draws in array order, as repeated scalar calls would."""
        ts = np.asarray(decision_ts, dtype=np.int64)
        out = ts + np.int64(self.base_ns)
        if self.random:
            out = out + self._draws(rng, ts.shape)
        return out

    def _draw(self, rng: np.random.Generator | None) -> int:
        if not self.random:
            return 0
        return int(self._draws(rng, ())[()])

    def _draws(self, rng: np.random.Generator | None, shape: tuple[int, ...]) -> np.ndarray:
        if rng is None:
            raise ValueError("a jittered latency model needs a seeded numpy Generator")
        if self.jitter == "uniform":
            # integers() on [0, jitter_ns] inclusive keeps arrival times on the integer ns grid
            return rng.integers(0, self.jitter_ns, size=shape, endpoint=True, dtype=np.int64)
        return np.floor(rng.exponential(self.jitter_ns, size=shape)).astype(np.int64)


@dataclass(frozen=True)
class VenueLatencies:
    """One latency model per venue code (``deribit``, ``binance``, ``synth``...)."""

    models: Mapping[str, LatencyModel] = field(default_factory=dict)
    default: LatencyModel = LatencyModel()

    def for_venue(self, venue: str) -> LatencyModel:
        return self.models.get(venue, self.default)

    def arrival_ts(self, venue: str, decision_ts: int,
                   rng: np.random.Generator | None = None) -> int:
        return self.for_venue(venue).arrival_ts(decision_ts, rng)

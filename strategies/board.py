"""The surface board: where the calibration consumer publishes the latest surface for books and
strategies to read."""

from __future__ import annotations

import math
from collections.abc import Callable

from calibration.surface import Surface
from replay.engine.state import NEVER


class SurfaceBoard:
    """Where the calibration consumer publishes its latest surface for strategies to read.

    A plain shared object (not journaled itself: the fits are); deliberately not a dataclass,
    so that ``hydra.utils.instantiate(cfg, board=board)`` passes it through instead of turning
    it into a config node.  ``spot`` is the underlying mid at fit time when the publisher gives
    it (used to roll forwards with the market).

    A publisher that replays stored surfaces may publish a loader instead
    (:meth:`publish_lazy`): the surface is then built the first time someone reads it, so
    surfaces nobody looks at cost nothing.
    """

    def __init__(self, surface: Surface | None = None, ts: int = NEVER,
                 spot: float = math.nan) -> None:
        self.publish(surface, ts, spot)

    def publish(self, surface: Surface | None, ts: int, spot: float = math.nan) -> None:
        self._surface, self._load = surface, None
        self.ts, self.spot = int(ts), float(spot)

    def publish_lazy(self, load: Callable[[], Surface], ts: int, spot: float = math.nan) -> None:
        self._surface, self._load = None, load
        self.ts, self.spot = int(ts), float(spot)

    @property
    def surface(self) -> Surface | None:
        if self._load is not None:
            self._surface, self._load = self._load(), None
        return self._surface

    def __repr__(self) -> str:
        return f"SurfaceBoard(ts={self.ts}, has_surface={self.surface is not None})"

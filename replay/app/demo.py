"""``volreplay demo``: the backtest ``make demo`` runs on the synthetic store.

A short straddle on the synthetic market, an SVI surface refitted every 30 s of market time,
and a fixed delta-band hedge on the perpetual: the smallest run that
exercises every part (calibration, book, hedging, venue, journal, analytics, report).
"""

from __future__ import annotations

from pathlib import Path

DEMO_OVERRIDES = ["calibration=svi", "calibration.every=30s", "book=fixed", "strategy=delta_band"]


def demo(db: str | Path) -> int:
    from replay.app.hydra_app import main, quote_value

    if not Path(db).exists():
        from replay.errors import UserError

        raise UserError(f"{db} not found; `make demo` builds it (`volreplay synth --db {db} "
                        "--scale small --hours 2 --seed 7`)")
    return main([f"data.db={quote_value(str(db))}", *DEMO_OVERRIDES])

"""Ingestion adapters, one module per source format, behind one registry.

``FORMATS`` maps each ``volreplay ingest FORMAT`` name to ``"module:function"``; modules are
imported lazily so that one format's optional parsing code never slows another down.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from replay.errors import IngestError
from replay.ingest.core import Adapter, Chunk, Reject, ingest_files, resolve_paths
from replay.store.database import LoadReport, MarketStore

FORMATS: dict[str, str] = {
    "deribit-summary": "replay.ingest.deribit_summary:read",
    "tardis-options-chain": "replay.ingest.tardis:read_options_chain",
    "tardis-quotes": "replay.ingest.tardis:read_quotes",
    "tardis-trades": "replay.ingest.tardis:read_trades",
    "tardis-derivative-ticker": "replay.ingest.tardis:read_derivative_ticker",
    "binance-ws": "replay.ingest.binance_ws:read",
    "canonical": "replay.ingest.canonical:read",
}


def adapter(fmt: str) -> Adapter:
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    mod, fn = FORMATS[fmt].split(":")
    return getattr(importlib.import_module(mod), fn)


def ingest(store: MarketStore, fmt: str, srcs: list[str], progress=None) -> LoadReport:
    """Ingest files or folders in ``fmt`` into an open, writable store."""
    return ingest_files(store, fmt, adapter(fmt), resolve_paths(srcs), progress)


__all__ = ["FORMATS", "Adapter", "Chunk", "IngestError", "Reject", "adapter", "ingest", "Path"]

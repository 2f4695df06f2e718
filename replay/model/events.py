"""Journal event kinds and their canonical bytes: what a derived event is, independent of
where it is stored (:mod:`replay.engine.journal` writes them).

A kind declares its payload table and typed fields (:class:`EventKind`); modules add kinds with
:func:`register_kind`.  An event has one payload row (``fills``) or several
(``calibration_quotes``: one row per quote of a fit).

Canonical serialization and hash
--------------------------------
Event bytes: ``seq, ts`` (int64 LE), ``cause_stream`` (int8), ``cause_seq`` (int64 LE), the
kind name and the source (UTF-8, uint32 LE length prefix), then the payload's digest
``blake2b(payload, digest_size=32)``.  The payload is the row count (uint32 LE), then each
hashed field in declared order as a column: ints int64 LE, floats IEEE-754 binary64 LE with
every NaN written as the one quiet NaN ``0x7ff8000000000000``, bools one byte, strings
length-prefixed UTF-8 (``0xffffffff`` for NULL), float lists (``floats``, e.g. a fit's
parameters) a uint32 LE count then the floats as above.  The running hash is chained:
``h_k = blake2b(h_{k-1} || bytes_k, digest_size=32)`` with ``h_0`` 32 zero bytes, so it can be
saved in a snapshot and resumed.

The payload enters by its digest so that a recorded event (a replayed surface fit: a dozen
rows) is chained from 32 stored bytes, without reading or serialising its rows again.

This is version :data:`HASH_VERSION` of the definition (1: the payload bytes entered the
event's bytes themselves, not their digest); a journal records the version it was hashed
under.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import pyarrow as pa

TYPES = {"int": ("BIGINT", pa.int64()), "float": ("DOUBLE", pa.float64()),
          "str": ("VARCHAR", pa.string()), "bool": ("BOOLEAN", pa.bool_()),
          "floats": ("DOUBLE[]", pa.list_(pa.float64()))}
_QNAN_BYTES = struct.pack("<Q", 0x7FF8000000000000)
_QNAN = np.frombuffer(_QNAN_BYTES, "<f8")[0]
_I64, _F64, _U32 = (struct.Struct(f).pack for f in ("<q", "<d", "<I"))
#: the fixed head of an event's bytes: seq, ts, cause stream, cause seq
HEAD = struct.Struct("<qqbq")
H0 = bytes(32)
#: the version of the canonical bytes and running hash defined above; bumped when they change
HASH_VERSION = 2


@dataclass(frozen=True)
class EventKind:
    """A derived-event kind: its name, payload table and typed fields (int, float, str, bool
    or floats: a list of floats)."""

    name: str
    table: str
    fields: tuple[tuple[str, str], ...]
    #: fields stored but left out of the hash: wall-clock measurements (e.g. a fit's ``fit_ms``)
    #: that differ between identical runs and would otherwise break determinism checks
    unhashed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if set(self.unhashed) - {f for f, _ in self.fields}:
            raise ValueError(f"{self.name}: unhashed fields {self.unhashed} are not all fields")
        for f, t in self.fields:
            if t not in TYPES:
                raise ValueError(f"{self.name}.{f}: type {t!r} not one of {sorted(TYPES)}")
            if f in ("seq", "ts"):
                raise ValueError(f"{self.name}: field name {f!r} is reserved")

    @cached_property
    def hashed(self) -> tuple[tuple[str, str], ...]:
        """The ``(field, type)`` pairs that enter the hash, in declared order."""
        return tuple((f, t) for f, t in self.fields if f not in self.unhashed)

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(f for f, _ in self.fields)

    @cached_property
    def exact(self) -> tuple[tuple[str, str], ...]:
        """The ``int`` and ``bool`` fields (:func:`_check_exact`)."""
        return tuple((f, t) for f, t in self.fields if t in ("int", "bool"))

    @cached_property
    def has_float_lists(self) -> bool:
        return any(t == "floats" for _, t in self.fields)

    def declaration(self) -> str:
        """The kind as JSON (table, fields, unhashed fields): what a journal records of each
        kind it holds, so that its hash is recomputed from the file alone
        (:func:`replay.store.journal_file.recompute_hash`), whatever code declared the kind."""
        return json.dumps({"table": self.table, "fields": [list(f) for f in self.fields],
                           "unhashed": list(self.unhashed)})

    @classmethod
    def from_declaration(cls, name: str, text: str) -> EventKind:
        d = json.loads(text)
        return cls(name, d["table"], tuple((f, t) for f, t in d["fields"]),
                   tuple(d["unhashed"]))

    def ddl(self) -> str:
        cols = ", ".join(f"{f} {TYPES[t][0]}" for f, t in self.fields)
        sep = ", " if cols else ""
        return f"CREATE TABLE IF NOT EXISTS {self.table} (seq BIGINT, ts BIGINT{sep}{cols})"

    def schema(self) -> pa.Schema:
        return pa.schema([("seq", pa.int64()), ("ts", pa.int64())]
                         + [(f, TYPES[t][1]) for f, t in self.fields])


KINDS: dict[str, EventKind] = {}


def register_kind(kind: EventKind) -> EventKind:
    """Declare an event kind (idempotent for an identical declaration)."""
    old = KINDS.get(kind.name)
    if old is not None and old != kind:
        raise ValueError(f"event kind {kind.name!r} already declared differently: {old}")
    clash = [k for k in KINDS.values() if k.table == kind.table and k.name != kind.name]
    if clash:
        raise ValueError(f"table {kind.table!r} already belongs to kind {clash[0].name!r}")
    KINDS[kind.name] = kind
    return kind


def kind_of(kind: str | EventKind) -> EventKind:
    """The declared kind named ``kind`` (an :class:`EventKind` is returned as it is)."""
    if isinstance(kind, EventKind):
        return kind
    k = KINDS.get(kind)
    if k is None:
        raise KeyError(f"unknown journal event kind {kind!r}; declare it with register_kind")
    return k


for _k in (
    EventKind("wake", "wakes", (("consumer", "str"), ("reason", "str"))),
    EventKind("order", "orders", (("order_id", "int"), ("instrument_id", "int"), ("qty", "float"),
                                  ("limit_price", "float"), ("arrival_ts", "int"),
                                  ("consumer", "str"))),
    EventKind("fill", "fills", (("order_id", "int"), ("instrument_id", "int"), ("qty", "float"),
                                ("price", "float"), ("fee", "float"), ("multiplier", "float"))),
    EventKind("fee", "fees", (("instrument_id", "int"), ("amount", "float"), ("reason", "str"))),
    EventKind("funding", "funding_payments", (("instrument_id", "int"), ("position", "float"),
                                              ("rate", "float"), ("amount", "float"),
                                              ("usd_per_coin", "float"))),
    # one row per expiry of a fit; the fit-level figures repeat on each row
    EventKind("surface_fit", "surface_fits", (
        ("model", "str"), ("expiry", "int"), ("t", "float"), ("forward", "float"),
        ("params", "floats"), ("n_quotes", "int"), ("rmse_vol_pts", "float"),
        ("inside_spread_pct", "float"), ("fit_ms", "float"), ("arb_violations", "int"),
        ("published", "bool"), ("reason", "str"), ("carried", "bool")), unhashed=("fit_ms",)),
    EventKind("calibration_quotes", "calibration_quotes",
              (("instrument", "str"), ("expiry", "int"), ("strike", "float"),
               ("forward", "float"), ("bid_iv", "float"), ("ask_iv", "float"),
               ("mid_iv", "float"), ("fit_iv", "float"), ("venue_mark_iv", "float"))),
    EventKind("pnl", "pnl", (("total_usd", "float"), ("total_coin", "float"),
                             ("options_usd", "float"), ("hedge_usd", "float"),
                             ("fees_usd", "float"), ("funding_usd", "float"))),
    EventKind("snapshot", "snapshots", (("n_events", "int"),)),
):
    register_kind(_k)


def _canon_floats(vals) -> bytes:
    a = np.array(vals, dtype="<f8")
    a[np.isnan(a)] = _QNAN
    return a.tobytes()


def _canon_float_lists(vals) -> bytes:
    """Each list as its uint32 LE length then its floats (:func:`_canon_floats`); lists of one
    length (a model's parameters) in one array pass, ragged ones list by list."""
    lens = {len(x) for x in vals}
    if len(lens) != 1:
        return b"".join(struct.pack("<I", len(x)) + _canon_floats(x) for x in vals)
    width = lens.pop()
    rows = np.empty((len(vals), 4 + 8 * width), dtype=np.uint8)
    rows[:, :4] = np.frombuffer(struct.pack("<I", width), dtype=np.uint8)
    rows[:, 4:] = np.frombuffer(_canon_floats(vals), dtype=np.uint8).reshape(len(vals), -1)
    return rows.tobytes()


def _canon_column(vals: list | np.ndarray, typ: str) -> bytes:
    if typ == "int":
        return np.asarray(vals, dtype="<i8").tobytes()
    if typ == "float":
        return _canon_floats(vals)
    if typ == "floats":
        return _canon_float_lists(vals)
    if typ == "bool":
        return bytes(2 if x is None else int(bool(x)) for x in vals)
    try:
        return b"".join(map(_canon_str, vals))
    except TypeError:  # an unhashable cell: its text, as any other's
        return b"".join(_canon_str.__wrapped__(x) for x in vals)


@lru_cache(maxsize=1 << 12, typed=True)
def _canon_str(x: object) -> bytes:
    """One ``str`` cell's canonical bytes (None: ``0xffffffff``), remembered: a column repeats
    a few values (a model's name, a reason), and a build digests a dozen rows a wake."""
    return b"\xff\xff\xff\xff" if x is None else length_prefixed(str(x))


def length_prefixed(s: str) -> bytes:
    """UTF-8 with a uint32 LE length prefix."""
    b = s.encode()
    return struct.pack("<I", len(b)) + b


def columns_of(kind: EventKind, rows: Mapping[str, object]) -> tuple[int, dict[str, list]]:
    """An event's payload as ``(row count, {field: list})``: each declared field maps to a
    scalar (broadcast) or to equal-length sequences; for a ``floats`` field the scalar is one
    list of floats and the sequence a list of them."""
    if rows.keys() != kind.names:
        missing = [f for f, _ in kind.fields if f not in rows]
        extra = sorted(set(rows) - kind.names)
        raise ValueError(f"{kind.name}: missing fields {missing}, unknown fields {extra}")
    if not kind.has_float_lists and not any(isinstance(v, _SEQUENCES) for v in rows.values()):
        # one row of scalars (a decision, an order, a mark): the same columns, at once
        for f, t in kind.exact:
            _check_exact(kind, f, t, rows[f])
        return 1, {f: [rows[f]] for f, _ in kind.fields}
    seqs = {f: rows[f] for f, t in kind.fields if _is_column(rows[f], t)}
    n = len(next(iter(seqs.values()))) if seqs else 1
    if any(len(c) != n for c in seqs.values()):
        raise ValueError(f"{kind.name}: payload columns differ in length")
    for f, t in kind.exact:
        _check_exact(kind, f, t, rows[f])
    # float lists stay lists of lists: their lengths may differ; an array's column becomes a
    # list of Python scalars, a list or tuple a list of its own items
    return n, {f: ((list(map(list, rows[f])) if t == "floats" else _as_list(rows[f]))
                   if f in seqs else [list(rows[f]) if t == "floats" else rows[f]] * n)
               for f, t in kind.fields}


def _as_list(column: list | tuple | np.ndarray) -> list:
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def _check_exact(kind: EventKind, f: str, typ: str, value: object) -> None:
    """An ``int`` or ``bool`` field given floats: refused unless they are whole numbers (an
    int) or 0 and 1 (a bool), where the canonical bytes and the stored column would otherwise
    coerce them (3.9 as 3, NaN as True)."""
    if value is None or isinstance(value, int):  # bool is an int; the common case, at once
        return
    a = np.asarray(value)
    if a.dtype.kind != "f":
        return
    ok = (a == np.trunc(a)) if typ == "int" else ((a == 0) | (a == 1))
    if not ok.all():
        bad = float(a[~ok].flat[0])
        raise ValueError(f"{kind.name}.{f}: {bad!r} is not {'an int' if typ == 'int' else 'a bool'}")


_SEQUENCES = (list, tuple, np.ndarray)


def _is_column(value: object, typ: str) -> bool:
    """Whether a payload field's value holds one entry per row (else it is broadcast)."""
    if not isinstance(value, _SEQUENCES):
        return False
    if typ != "floats":
        return True
    return (np.ndim(value) == 2 if isinstance(value, np.ndarray)
            else len(value) > 0 and isinstance(value[0], (list, tuple, np.ndarray)))


def payload_bytes(kind: EventKind, cols: Mapping[str, list]) -> bytes:
    """The payload part of an event's canonical bytes: row count, then the hashed columns."""
    n = len(next(iter(cols.values()))) if cols else 1
    if n == 1:  # the same bytes, without numpy's per-call cost on one-element columns
        return _U32(1) + b"".join(_canon_one(cols[f][0], t) for f, t in kind.hashed)
    return _U32(n) + b"".join(_canon_column(cols[f], t) for f, t in kind.hashed)


def _canon_one(value: object, typ: str) -> bytes:
    """:func:`_canon_column` of the one-entry column ``[value]``."""
    if typ == "float" and isinstance(value, float):  # numpy's float64 is a float too
        return _F64(value) if value == value else _QNAN_BYTES
    if typ == "int" and isinstance(value, int):
        return _I64(value)
    if typ == "str" and isinstance(value, str):
        return length_prefixed(value)
    if typ == "bool":
        return b"\x02" if value is None else (b"\x01" if value else b"\x00")
    return _canon_column([value], typ)


def payload_digest(kind: EventKind, cols: Mapping[str, list]) -> bytes:
    """The 32-byte digest by which an event's payload enters the hash."""
    return hashlib.blake2b(payload_bytes(kind, cols), digest_size=32).digest()


def checked_payload(kind: EventKind, rows: Mapping[str, object]
                    ) -> tuple[int, dict[str, list], bytes]:
    """An event's rows as the journal appends them: ``(row count, columns, digest)`` by
    :func:`columns_of` and :func:`payload_digest`, for a caller that uses them twice."""
    n, cols = columns_of(kind, rows)
    return n, cols, payload_digest(kind, cols)


def canonical_bytes(seq: int, ts: int, kind: EventKind, cause_stream: int, cause_seq: int,
                    source: str, cols: Mapping[str, list]) -> bytes:
    return (HEAD.pack(seq, ts, cause_stream, cause_seq) + length_prefixed(kind.name)
            + length_prefixed(source) + payload_digest(kind, cols))


def chain(h: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(h + data, digest_size=32).digest()

"""``volreplay inspect``: what a store holds, in one screen."""

from __future__ import annotations

import json

from replay.model.schema import MARKET_TABLES
from replay.store import open_store
from replay.units import iso


def summarize(path: str) -> dict:
    """Counts, spans, instruments, clock offsets, loads and the quarantine summary."""
    with open_store(path) as store:
        q = store._exec
        tables = {}
        for t in MARKET_TABLES:
            n, lo, hi = q(f"SELECT count(*), min(ts_recv), max(ts_recv) FROM {t}")[0]
            entry = {"rows": n, "first": iso(lo), "last": iso(hi)}
            if n and t != "instruments":
                # Median receive-minus-exchange gap: latency, or clock offset between machines.
                entry["median_recv_minus_exchange_ms"] = round(
                    q(f"SELECT median(ts_recv - ts_exchange) / 1e6 FROM {t}")[0][0], 3)
            if n and t == "option_quotes":
                # valid rows, but nothing a calibration can fit: a recording that lost its
                # bid and ask columns shows up here, not as a silent calibration
                entry["rows_without_bid_or_ask"] = q(
                    f"SELECT count(*) FROM {t} WHERE bid_price IS NULL AND ask_price IS NULL")[0][0]
            tables[t] = entry
        kinds = dict(q("SELECT kind, count(*) FROM instruments GROUP BY kind ORDER BY kind"))
        expiries = [iso(r[0]) for r in q(
            "SELECT DISTINCT expiry_ns FROM instruments WHERE kind = 'option' ORDER BY 1")]
        quarantine = [{"reason": r, "rows": n} for r, n in q(
            "SELECT reason, count(*) n FROM quarantine GROUP BY reason ORDER BY n DESC, reason")]
        loads = q("SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_ingested), 0), "
                  "coalesce(sum(rows_quarantined), 0) FROM loads")[0]
        extra = sorted(set(store.tables()) - set(MARKET_TABLES) - {"quarantine", "loads"})
        lo, hi = store.time_span()
    return {
        "db": str(path),
        "span": {"first": iso(lo), "last": iso(hi)},
        "tables": tables,
        "instruments": {"by_kind": kinds, "option_expiries": expiries},
        "loads": {"files": loads[0], "read": loads[1], "ingested": loads[2], "quarantined": loads[3]},
        "quarantine": quarantine,
        "other_tables": extra,
    }


def inspect_store(path: str, as_json: bool = False) -> str:
    s = summarize(path)
    if as_json:
        return json.dumps(s, indent=2)
    lines = [f"store  {s['db']}", f"span   {s['span']['first']} .. {s['span']['last']}", "",
             f"{'table':<20}{'rows':>12}  {'first':<30}{'last':<30}{'recv-exch ms':>13}"]
    for t, e in s["tables"].items():
        off = e.get("median_recv_minus_exchange_ms")
        lines.append(f"{t:<20}{e['rows']:>12,}  {e['first'] or '-':<30}{e['last'] or '-':<30}"
                     f"{'' if off is None else off:>13}")
    empty = s["tables"].get("option_quotes", {}).get("rows_without_bid_or_ask")
    if empty:
        lines.append(f"option quotes with neither bid nor ask: {empty:,} of "
                     f"{s['tables']['option_quotes']['rows']:,} (nothing to calibrate on)")
    inst = s["instruments"]
    lines += ["", "instruments  " + ", ".join(f"{k}: {v}" for k, v in inst["by_kind"].items())]
    if inst["option_expiries"]:
        lines.append(f"option expiries ({len(inst['option_expiries'])}): "
                     + ", ".join(e[:16] for e in inst["option_expiries"]))
    ld = s["loads"]
    lines += ["", f"loads  {ld['files']} files: read {ld['read']:,} = ingested {ld['ingested']:,}"
                  f" + quarantined {ld['quarantined']:,}"]
    if s["quarantine"]:
        lines.append("quarantine by reason:")
        lines += [f"  {r['rows']:>10,}  {r['reason']}" for r in s["quarantine"]]
    else:
        lines.append("quarantine: empty")
    if s["other_tables"]:
        lines.append("other tables: " + ", ".join(s["other_tables"]))
    return "\n".join(lines)

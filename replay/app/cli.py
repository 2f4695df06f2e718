"""``volreplay`` command line.  Each sub-command is a thin shell over a library function.

Exit codes: 0 success; 2 (:data:`EXIT_USER_ERROR`) for every user mistake (bad paths,
unknown formats, bad configs, empty data selections, a locked store, a sweep in which a job
failed on one), reported as one ``volreplay: error:`` line; 1 for a genuine bug, which shows a
traceback (and a sweep in which a job crashed); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from replay.app import use_system_allocator
from replay.errors import EXIT_USER_ERROR, error_line, is_user_error


def _version() -> str:
    """The installed distribution's version (a source tree that was never installed has none)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("volreplay")
    except PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def cmd_ingest(args: argparse.Namespace) -> int:
    from replay.errors import IngestError
    from replay.ingest import ingest
    from replay.store import open_store

    made = [f for f in (Path(args.db), Path(f"{args.db}.wal")) if not f.exists()]
    try:
        with open_store(args.db, read_only=False) as store:
            rep = ingest(store, args.format, args.src,
                         progress=(lambda m: print(m, file=sys.stderr)) if args.verbose else None)
    except BaseException:
        if made and _loads(args.db) == 0:  # a store this command created, left empty
            for f in made:
                f.unlink(missing_ok=True)
        raise
    print(rep.as_json())
    if rep.read and not rep.ingested:
        dups = sum(n for r, n in rep.reasons.items() if r.split(":")[0] == "duplicate")
        if dups == rep.read:
            print(f"volreplay: all {rep.read:,} rows read were already in the store "
                  "(quarantined as duplicates); nothing new was ingested", file=sys.stderr)
            return 0
        rest = {r: n for r, n in rep.reasons.items() if r.split(":")[0] != "duplicate"}
        top = max(rest, key=rest.get) if rest else "unknown"
        stored = f"{dups:,} were already in the store, the rest " if dups else ""
        raise IngestError(f"ingest {args.format}: none of the {rep.read:,} rows read could be "
                          f"ingested ({stored}quarantined, most as {top!r}): are the sources in "
                          f"the {args.format} format? `volreplay inspect --db {args.db}` shows "
                          "the quarantine")
    return 0


def _loads(db: str) -> int | None:
    """How many files a DuckDB store records as loaded (None: it cannot be read)."""
    import duckdb

    try:
        with duckdb.connect(db, read_only=True) as con:
            return int(con.execute("SELECT count(*) FROM loads").fetchone()[0])
    except duckdb.Error:
        return None


def cmd_synth(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from replay.errors import ConfigError
    from replay.synth import SynthConfig, synthesize
    from replay.synth.chain import ChainParams
    from replay.synth.paths import ModelParams

    params = ModelParams() if args.jumps_per_year is None else \
        replace(ModelParams(), jump_intensity=args.jumps_per_year)
    fixed = {"sticky_moneyness": 0.0, "sticky_strike": 1.0}
    if args.jumps_per_year is not None and args.model != "bates":
        raise ConfigError(f"synth: --jumps-per-year goes with --model bates, not {args.model}")
    if args.ssr is not None and not math.isfinite(args.ssr):
        raise ConfigError(f"synth: --ssr {args.ssr} is not a number")
    if args.smile_dynamics == "ssr" and args.ssr is None:
        raise ConfigError("synth: --smile-dynamics ssr needs --ssr R")
    if args.smile_dynamics in fixed and args.ssr is not None:
        raise ConfigError(f"synth: --ssr goes with --smile-dynamics ssr, not "
                          f"{args.smile_dynamics} (whose SSR is {fixed[args.smile_dynamics]:g})")
    dynamics = fixed.get(args.smile_dynamics, args.ssr)
    chain = ChainParams(smile_ssr=None if dynamics is None else float(dynamics))
    cfg = SynthConfig(hours=args.hours, seed=args.seed, model=args.model, scale=args.scale,
                      params=params, chain=chain)
    if Path(args.db).is_dir():
        from replay.errors import StoreError

        raise StoreError(f"synth --db {args.db}: a folder; synth writes a DuckDB store file "
                         "(e.g. datasets/day.duckdb), and `volreplay export` makes a Parquet "
                         "store of it")
    summary = synthesize(args.db, cfg)
    print(json.dumps(summary))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from replay.store.summary import inspect_store

    print(inspect_store(args.db, as_json=args.json))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from replay.store.parquet import export_parquet

    man = export_parquet(args.db, args.out, partition=args.partition)
    tables = man["tables"].values()
    print(json.dumps({"out": args.out, "tables": len(man["tables"]),
                      "files": sum(len(e["files"]) for e in tables),
                      "rows": sum(e["rows"] for e in tables), "first": man["span"]["first"],
                      "last": man["span"]["last"], "content_sha256": man["content_sha256"]}))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from replay.app.bench import run_bench

    return run_bench(quick=args.quick, cases=args.case)


def cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    from replay.app.hydra_app import main as app_main

    return app_main(rest)


def cmd_calibrate(args: argparse.Namespace, rest: list[str]) -> int:
    from replay.app.surfaces.calibrate import main as calibrate_main

    return calibrate_main(rest)


def cmd_cache(args: argparse.Namespace) -> int:
    from replay.app.surfaces.inventory import cached_streams, clean, summary

    if args.action == "list":
        streams = cached_streams()
        for st in streams:
            print(json.dumps(st.as_row()))
        print(json.dumps(summary(streams)))
    else:
        print(json.dumps(clean(stale=args.stale, unused_days=args.unused_days,
                               everything=args.all, dry_run=args.dry_run)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from replay.app.report import rerender

    for path in rerender(Path(args.dir)):
        print(path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from replay.app.demo import demo

    return demo(args.db)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="volreplay",
        description="Event-sourced backtesting and replay for crypto options desks.",
        epilog=f"Exit codes: 0 ok, {EXIT_USER_ERROR} user error (one 'volreplay: error:' line), "
               "1 internal error, 130 interrupted.")
    p.add_argument("--version", action="version", version=f"volreplay {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a synthetic Deribit-like market into a store")
    s.add_argument("--db", required=True)
    s.add_argument("--hours", type=float, default=None, help="market hours (default per scale)")
    s.add_argument("--seed", type=int, default=0, help="default 0")
    s.add_argument("--model", choices=["gbm", "heston", "bates"], default="heston",
                   help="default heston")
    s.add_argument("--scale", choices=["small", "day", "large"], default="small",
                   help="default small (2 hours)")
    s.add_argument("--jumps-per-year", type=float, default=None,
                   help="bates: jump intensity (default 25 a year; a day then rarely has one)")
    s.add_argument("--smile-dynamics", choices=["sticky_moneyness", "sticky_strike", "ssr"],
                   default=None,
                   help="how the true smile moves with spot: at that skew stickiness ratio "
                        "(ssr: with --ssr R); unset, at fixed moneyness with its level "
                        "following the variance")
    s.add_argument("--ssr", type=float, default=None,
                   help="the smile's SSR (--smile-dynamics ssr, which it implies alone)")
    s.set_defaults(fn=cmd_synth)

    from replay.ingest import FORMATS

    s = sub.add_parser("ingest", help="load files into a store")
    s.add_argument("format", choices=list(FORMATS), metavar="FORMAT",
                   help="one of: " + ", ".join(FORMATS))
    s.add_argument("src", nargs="+", metavar="SRC", help="files or folders")
    s.add_argument("--db", required=True)
    s.add_argument("-v", "--verbose", action="store_true", help="print per-file accounting")
    s.set_defaults(fn=cmd_ingest)

    s = sub.add_parser("inspect", help="tables, counts, time span, instruments, quarantine")
    s.add_argument("--db", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_inspect)

    s = sub.add_parser("export", help="write a store as Parquet files for shared or object "
                       "storage (open the folder or its URL like a store)")
    s.add_argument("--db", required=True, help="the DuckDB store to export")
    s.add_argument("--out", required=True, help="a new directory")
    s.add_argument("--partition", choices=["day", "none"], default="day",
                   help="market tables: one file per UTC day of ts_recv (default) or one file")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("run", help="one backtest (Hydra overrides follow)", add_help=False)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("calibrate", help="build the surface stream a run would use "
                       "(Hydra overrides follow, as for run)", add_help=False)
    s.set_defaults(fn=cmd_calibrate)

    s = sub.add_parser("cache", help="list or clean the cached surface streams "
                       "($VOLREPLAY_CACHE_DIR/surfaces, default "
                       "${XDG_CACHE_HOME:-~/.cache}/volreplay/surfaces)")
    actions = s.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="one JSON line per stream, most recently used first, "
                       "then a summary line")
    c = actions.add_parser("clean", help="remove streams (a run whose journal links the "
                           "rows of a removed one, calibration.journal_rows=link, can no longer "
                           "read them: run it again); prints one JSON summary line")
    c.add_argument("--stale", action="store_true",
                   help="streams built by another code version (this install never replays "
                   "them; journals of runs made with them may still link their rows)")
    c.add_argument("--unused-days", type=float, default=None, metavar="N",
                   help="streams no run has read or built for N days or more")
    c.add_argument("--all", action="store_true", help="every stream")
    c.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    s.set_defaults(fn=cmd_cache)

    s = sub.add_parser("report", help="re-render reports of a run or sweep directory")
    s.add_argument("dir")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("bench", help="run benchmark cases, one JSON line each")
    s.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    s.add_argument("--case", action="append", help="run only this case (repeatable)")
    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("demo", help="run the demo backtest and print the report path")
    s.add_argument("--db", default="datasets/demo.duckdb")
    s.set_defaults(fn=cmd_demo)
    return p


def _refuse(message: str) -> int:
    from replay.errors import ConfigError

    raise ConfigError(message)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    use_system_allocator()
    parser = build_parser()
    if argv and argv[0] in ("run", "calibrate"):  # Hydra owns the rest of the command line
        args, rest = argparse.Namespace(fn=None), argv[1:]
        cmd = cmd_run if argv[0] == "run" else cmd_calibrate
        runner = lambda: cmd(args, rest)  # noqa: E731
        if any(a == "--db" or a.startswith("--db=") for a in rest):  # as the other commands
            runner = lambda: _refuse(f"--db: {argv[0]} takes its overrides only; "  # noqa: E731
                                     "give the store as data.db=PATH")
    else:
        args = parser.parse_args(argv)
        runner = lambda: args.fn(args)  # noqa: E731
    try:
        return runner() or 0
    except KeyboardInterrupt:
        print("volreplay: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`| head`): nothing to say
        # Python flushes stdout again at exit, into the same closed pipe: point it elsewhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:
        if not is_user_error(e):
            raise  # a bug: its traceback
        print(f"volreplay: error: {error_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())

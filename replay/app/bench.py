"""``volreplay bench``: run the benchmark cases in ``bench/`` and print one JSON line each.

A case is a module ``bench/<name>.py`` with ``run(quick: bool) -> dict``.  The dict holds the
figures measured in that run (see docs/outputs.md); the harness runs each case in its own
process, adds ``"case"`` and turns any exception into ``"error"`` so that one broken case
never hides the others.  Cases measure
side by side in one process (ours against a reference), because absolute times on shared
machines are noisy.

Stores that take long to build (the synthetic day, the large replay store) are kept between
runs in :func:`cache_dir`, outside the checkout: ``$VOLREPLAY_CACHE_DIR`` if set, else
``${XDG_CACHE_HOME:-~/.cache}/volreplay``.  Delete the folder to rebuild them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

#: Order in which cases run (cheap first); any other bench/*.py case runs after these.
ORDER = ["ingest", "synth", "iv", "svi_slice", "surface_refit", "replay", "parquet_store",
         "backtest"]


#: Environment variable naming the cache folder (see :func:`cache_dir`).
CACHE_ENV = "VOLREPLAY_CACHE_DIR"


def bench_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "bench"


#: Environment variable naming the folder of real recordings (see :data:`RECORDINGS`).
RECORDINGS_ENV = "VOLREPLAY_RECORDINGS"
#: Real recordings the cases use when present (``deribit/BTC``: book-summary Parquet files,
#: ``binance``: websocket JSON lines): ``$VOLREPLAY_RECORDINGS``, else a ``shared/data``
#: folder beside the checkout, as the test suite's ``shared_data`` fixture finds them.  A case
#: without them says so in its line.
RECORDINGS = Path(os.environ.get(RECORDINGS_ENV)
                  or Path(__file__).resolve().parents[3] / "shared" / "data")


def cache_dir() -> Path:
    """The folder for cached benchmark stores: ``$VOLREPLAY_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/volreplay``, else ``~/.cache/volreplay``.

    Why not ``datasets/``: the stores are hundreds of MB, and a checkout (possibly read-only,
    possibly several worktrees) is the wrong place for them.  A relative ``XDG_CACHE_HOME`` is
    ignored, as the XDG spec asks.
    """
    own = os.environ.get(CACHE_ENV, "").strip()
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "volreplay"


def dataset_path(name: str) -> Path:
    """Path of the cached benchmark store ``name`` (the cache folder is created)."""
    if Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"bench dataset name {name!r} must be a plain file name")
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def synth_store(name: str, cfg) -> Path:  # noqa: ANN001 - a replay.synth.SynthConfig
    """The cached benchmark store ``name``, synthesised with ``cfg``: built when missing, and
    rebuilt when ``cfg`` or the synthesiser's source changed since it was (a stamp beside it
    records both), so that a bench never measures the market an older synthesiser wrote.
    Written to a temporary file and renamed into place."""
    from replay.synth import synthesize

    path = dataset_path(name)
    stamp = path.with_name(path.name + ".synth")
    want = _synth_stamp(cfg)
    if path.exists() and stamp.exists() and stamp.read_text() == want:
        return path
    tmp = path.with_name(path.name + ".building")
    tmp.unlink(missing_ok=True)
    synthesize(tmp, cfg)
    os.replace(tmp, path)
    stamp.write_text(want)
    return path


def day_store(quick: bool) -> Path:
    """The synthetic Heston day (``--quick``: two hours) that the ``backtest`` and
    ``parquet_store`` cases replay (:func:`synth_store`)."""
    from replay.synth import SynthConfig

    return synth_store("bench_quick_backtest.duckdb" if quick else "bench_day.duckdb",
                       SynthConfig(hours=2 if quick else None, seed=11, model="heston",
                                   scale="small" if quick else "day"))


def _synth_stamp(cfg) -> str:  # noqa: ANN001
    from calibration.jitcache import source_digest

    root = Path(__file__).resolve().parents[2]
    return "\n".join([repr(cfg), *(source_digest(root / d) for d in (
        "replay/synth", "calibration/pricing"))])


def discover() -> dict[str, Path]:
    found = {p.stem: p for p in sorted(bench_dir().glob("*.py")) if not p.stem.startswith("_")}
    names = [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))
    return {n: found[n] for n in names}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"volreplay_bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_case(name: str, quick: bool) -> dict:
    """Run one case in this process (allocating as the CLI does) and return its JSON
    object."""
    from replay.app import use_system_allocator

    use_system_allocator()
    t0 = time.perf_counter()
    try:
        out = {"case": name, **_load(name, discover()[name]).run(quick)}
    except Exception as e:  # report and go on with the next case
        out = {"case": name, "error": f"{type(e).__name__}: {e}"}
        traceback.print_exc(file=sys.stderr)
    out["bench_wall_seconds"] = round(time.perf_counter() - t0, 3)
    return out


def run_bench(quick: bool = False, cases: list[str] | None = None) -> int:
    """Each case runs in a fresh interpreter, so that memory figures (peak RSS) and
    compile caches of one case never leak into the next."""
    available = discover()
    unknown = sorted(set(cases or []) - set(available))
    if unknown:
        from replay.errors import UserError

        raise UserError(f"unknown bench case(s) {unknown}; cases: {', '.join(available)}")
    for name in available:
        if cases and name not in cases:
            continue
        code = ("import json, sys; from replay.app.bench import run_case; "
                f"print(json.dumps(run_case({name!r}, {bool(quick)!r})))")
        p = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines:
            out = {"case": name, "error": f"case process exited with {p.returncode}"}
        else:
            out = json.loads(lines[-1])
        print(json.dumps(out), flush=True)
    return 0

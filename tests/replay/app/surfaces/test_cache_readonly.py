"""A surface cache shared read-only (a read-only mount, another user's folder): a job reads a
whole stream from it, to the journal hash of a job that reads it from a writable cache, and
writes nothing there (no lock file, no fingerprint memo); a stream that must be built there
(missing, partial, or ``refresh``) is a user error naming the folder and the way out.

The suite runs as root, for whom file modes stop no write, so :func:`read_only` makes every
write under a folder fail as on a read-only mount; one test checks real file modes in a
process without the privilege to pass them (``setpriv``, or a non-root user)."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import replay
from replay.app.selection import Selection, resolve_data, typed
from replay.app.surfaces.cache import ensure_stream, store_fingerprint, streams_dir
from replay.errors import UserError

NODE = {"_target_": "replay.consumers.calibration.CalibrationConsumer", "model": "svi",
        "every": "120s"}


def _cfg(db: Path, out: Path, **calibration) -> dict:
    return {"data": {"db": str(db)}, "out_dir": str(out), "seed": 3, "report": {"html": False},
            "calibration": {**NODE, **calibration},
            "book": {"_target_": "strategies.books.FixedBook", "structure": "straddle",
                     "size": 5.0},
            "strategy": {"_target_": "strategies.hedging.registry.DeltaBand", "band": 0.05,
                         "lot": 0.1}}


def _sel(db: Path) -> Selection:
    """The data selection a run of ``db`` resolves (its stream's key covers it)."""
    from replay.model.config import DataConfig

    return resolve_data(typed(DataConfig, {"db": str(db)}, "data")).sel


@pytest.fixture(scope="module")
def built(gbm_quarter_hour, cold, tmp_path_factory) -> dict:
    """The metrics of the run that built this module's stream, in a writable cache."""
    m = replay.run(_cfg(gbm_quarter_hour, tmp_path_factory.mktemp("builder") / "run"))
    assert m["surface_stream"]["built"]
    return m


@contextmanager
def read_only(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every write under ``root`` fails as on a read-only mount (``EROFS``), as the kernel
    orders it: making a folder that exists is ``EEXIST`` first."""
    top = os.path.realpath(root)

    def under(p: object) -> bool:
        if not isinstance(p, (str, bytes, os.PathLike)):
            return False  # a file descriptor
        full = os.path.realpath(os.fsdecode(p))
        return full == top or full.startswith(top + os.sep)

    def refuse(p: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(p))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def open_(file, mode="r", *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if under(file) and set(mode) & set("wax+"):
            refuse(file)
        return real_open(file, mode, *a, **k)

    def os_open(path, flags, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if under(path) and flags & writes:
            refuse(path)
        return real_os_open(path, flags, *a, **k)

    def mkdir(path, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if under(path):
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            refuse(path)
        return real_mkdir(path, *a, **k)

    def guard(real):  # noqa: ANN001, ANN202
        def call(*a, **k):  # noqa: ANN002, ANN003, ANN202
            for p in a[:2]:
                if under(p):
                    refuse(p)
            return real(*a, **k)
        return call

    with monkeypatch.context() as mp:
        mp.setattr(builtins, "open", open_)
        mp.setattr(io, "open", open_)
        mp.setattr(os, "open", os_open)
        mp.setattr(os, "mkdir", mkdir)
        for name in ("rename", "replace", "unlink", "remove", "rmdir", "utime", "chmod"):
            mp.setattr(os, name, guard(getattr(os, name)))
        yield


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_a_read_only_cache_serves_its_stream_to_the_writable_readers_hash(
        gbm_quarter_hour, built, tmp_path, monkeypatch):
    """The job fingerprints a store the cache has no memo of (a copy elsewhere: the memo is
    keyed by the file's path), so neither its lock nor its memo can be written."""
    copy = tmp_path / "copy.duckdb"
    shutil.copy(gbm_quarter_hour, copy)
    root = streams_dir()
    before = _tree(root)
    with read_only(root, monkeypatch):
        ro = replay.run(_cfg(copy, tmp_path / "ro"))
    assert _tree(root) == before  # nothing written, not even a lock file's time
    rw = replay.run(_cfg(gbm_quarter_hour, tmp_path / "rw"))
    assert not ro["surface_stream"]["built"] and not rw["surface_stream"]["built"]
    assert ro["surface_stream"]["key"] == rw["surface_stream"]["key"] == \
        built["surface_stream"]["key"]
    assert ro["journal_hash"] == rw["journal_hash"] == built["journal_hash"]


def test_a_read_only_cache_without_the_lock_file_is_read_without_a_lock(
        gbm_quarter_hour, built, monkeypatch):
    """A cache copied without its lock files (or whose builder's were cleaned): no build can
    be running there, and the published stream is whole."""
    path = Path(built["surface_stream"]["path"])
    lock = path.with_name(f"{path.name}.lock")
    saved = lock.read_bytes()
    lock.unlink()
    try:
        with read_only(streams_dir(), monkeypatch):
            info = ensure_stream(NODE, _sel(gbm_quarter_hour), mode="auto")
        assert info.path == path and not info.built and info.held is None
        info.release()
    finally:
        lock.write_bytes(saved)
    assert not list(path.parent.glob(".*"))  # no temporary folder


def test_the_fingerprint_memo_is_skipped_with_one_note(gbm_quarter_hour, cold, tmp_path,
                                                       monkeypatch, caplog):
    want = store_fingerprint(gbm_quarter_hour)
    monkeypatch.setenv("VOLREPLAY_CACHE_DIR", str(tmp_path / "shared"))  # no memo in it
    streams_dir().mkdir(parents=True)
    with read_only(streams_dir(), monkeypatch), caplog.at_level("INFO"):
        assert store_fingerprint(gbm_quarter_hour) == store_fingerprint(gbm_quarter_hour) == want
    notes = [r for r in caplog.records if "not memoised" in r.getMessage()]
    assert len(notes) == 1
    assert list(streams_dir().iterdir()) == []


@pytest.mark.parametrize("case", ["missing", "partial", "refresh"])
def test_a_stream_to_build_in_a_read_only_cache_is_a_user_error(gbm_quarter_hour, built,
                                                                 monkeypatch, case):
    """Missing (another config), partial (no manifest: a build cut short, which a reader never
    trusts) or asked to be rebuilt: the error names the cache and the ways out."""
    path, node, mode = Path(built["surface_stream"]["path"]), NODE, "auto"
    manifest = path / "manifest.json"
    if case == "missing":
        node = {**NODE, "every": "90s"}
    elif case == "partial":
        manifest.rename(path / "manifest.aside")
    else:
        mode = "refresh"
    try:
        with read_only(streams_dir(), monkeypatch), \
                pytest.raises(UserError) as err:
            ensure_stream(node, _sel(gbm_quarter_hour), mode=mode)
    finally:
        if case == "partial":
            (path / "manifest.aside").rename(manifest)
    msg = str(err.value)
    for part in (str(streams_dir()), "cannot be written", "VOLREPLAY_CACHE_DIR",
                 "calibration.cache=off", "where the cache can be written"):
        assert part in msg, part
    assert ("refresh" in msg) == (case == "refresh")


def test_the_cli_says_it_in_one_line(gbm_quarter_hour, built, monkeypatch, capsys):
    """A read-only mount's EROFS is no PermissionError: it was a traceback."""
    from replay.app.cli import main

    with read_only(streams_dir(), monkeypatch):
        rc = main(["calibrate", f"data.db={gbm_quarter_hour}", "calibration.every=90s"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("volreplay: error: ")
    assert str(streams_dir()) in err[0]


def _unprivileged() -> list[str]:
    """A command prefix for a process that file modes bind: none for a non-root user; for
    root, ``setpriv`` dropping every capability (skipped where it cannot)."""
    if os.geteuid() != 0:
        return []
    cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    try:
        ok = subprocess.run([*cmd, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        pytest.skip("setpriv cannot drop root's capabilities here")
    return cmd


_READER = """
import json, sys
from replay.app.selection import resolve_data
from replay.app.surfaces.cache import ensure_stream
from replay.errors import UserError
from replay.model.config import DataConfig
node, sel = json.loads(sys.argv[2]), resolve_data(DataConfig(db=sys.argv[1])).sel
info = ensure_stream(node, sel, mode="auto")
out = {"path": str(info.path), "built": info.built, "held": info.held is not None}
try:
    ensure_stream({**node, "every": "90s"}, sel, mode="auto")
except UserError as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


def test_real_file_modes_a_job_cannot_pass(gbm_quarter_hour, built, tmp_path):
    """As the other user of a shared cache: folders 0555, files 0444, no fingerprint memo."""
    prefix = _unprivileged()
    root = streams_dir()
    copy = tmp_path / "copy.duckdb"  # no memo of it in the cache
    shutil.copy(gbm_quarter_hour, copy)
    modes = {p: p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        got = subprocess.run([*prefix, sys.executable, "-c", _READER, str(copy),
                              json.dumps(NODE)], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "VOLREPLAY_LOG": "WARNING"})
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert got.returncode == 0, got.stderr
    out = json.loads(got.stdout)
    assert out["path"] == built["surface_stream"]["path"] and not out["built"] and out["held"]
    assert str(root) in out["error"] and "Permission denied" in out["error"]

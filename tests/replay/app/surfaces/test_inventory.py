"""Listing and cleaning the surface-stream cache, on streams built for real: another code
version's streams are stale, streams unused for N days go, a stream whose build holds its lock
stays, an interrupted build's leftovers go, and a removed stream is built again on the next
run."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pytest

import replay.app.surfaces.cache as cache
from replay.app.cli import main
from replay.app.selection import Selection
from replay.app.surfaces.inventory import cached_streams, clean


def _node(every: str) -> dict:
    return {"_target_": "replay.consumers.calibration.CalibrationConsumer", "model": "svi",
            "every": every}


@pytest.fixture
def streams(gbm_quarter_hour, tmp_path, monkeypatch):
    """Three streams in a fresh cache: two of this code version, one of another."""
    monkeypatch.setenv("VOLREPLAY_CACHE_DIR", str(tmp_path / "cache"))
    sel = Selection(str(gbm_quarter_hour))
    a = cache.ensure_stream(_node("120s"), sel)
    b = cache.ensure_stream(_node("180s"), sel)
    with monkeypatch.context() as m:
        m.setattr(cache, "code_version", lambda: "another code version")
        old = cache.ensure_stream(_node("120s"), sel)
    assert a.built and b.built and old.built and len({a.key, b.key, old.key}) == 3
    for s in (a, b, old):
        s.release()  # no run reads them
    return {"a": a, "b": b, "old": old, "sel": sel, "root": cache.streams_dir()}


def _age(root: Path, key: str, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(cache.lock_file(root, key), (t, t))


def test_list_shows_every_stream_and_which_this_code_reads(streams):
    got = {s.key: s for s in cached_streams()}
    assert set(got) == {streams[k].key for k in ("a", "b", "old")}
    assert [got[streams[k].key].current for k in ("a", "b", "old")] == [True, True, False]
    a = got[streams["a"].key]
    assert a.bytes == sum(f.stat().st_size for f in streams["a"].path.iterdir())
    row = a.as_row()
    assert row["every"] == "120s" and row["model"] == "svi" and row["wakes"] > 0
    assert abs(a.last_used - time.time()) < 120


def test_a_run_that_reads_a_stream_marks_it_used(streams):
    root, key = streams["root"], streams["a"].key
    _age(root, key, 30)
    before = {s.key: s.last_used for s in cached_streams()}[key]
    again = cache.ensure_stream(_node("120s"), streams["sel"])
    assert not again.built and again.key == key
    after = {s.key: s.last_used for s in cached_streams()}[key]
    assert after - before > 29 * 86400


def test_clean_stale_removes_only_another_versions_streams(streams):
    out = clean(stale=True)
    assert out["removed"] == 1 and out["keys"] == [streams["old"].key] and out["kept"] == 2
    assert out["freed_mb"] > 0
    assert not streams["old"].path.exists() and streams["a"].path.exists()
    assert {s.key for s in cached_streams()} == {streams["a"].key, streams["b"].key}
    # nothing half-removed is left beside the streams
    assert not [p for p in streams["root"].iterdir() if p.name.startswith(".")]


def test_clean_unused_days_and_dry_run(streams):
    root = streams["root"]
    _age(root, streams["b"].key, 10)
    dry = clean(unused_days=5, dry_run=True)
    assert dry["keys"] == [streams["b"].key] and dry["dry_run"]
    assert streams["b"].path.exists()  # a dry run removes nothing
    out = clean(unused_days=5)
    assert out["keys"] == [streams["b"].key] and out["kept"] == 2
    assert not streams["b"].path.exists()
    # the next run that needs it builds it again
    again = cache.ensure_stream(_node("180s"), streams["sel"])
    assert again.built and (again.path / "manifest.json").exists()


def test_a_stream_whose_build_holds_its_lock_stays(streams):
    root, key = streams["root"], streams["a"].key
    with open(cache.lock_file(root, key), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # as a refresh in progress would
        out = clean(everything=True)
    assert out["busy"] == 1 and key not in out["keys"] and out["removed"] == 2
    assert streams["a"].path.exists()


def test_a_stream_a_run_reads_stays_and_is_readable_by_the_cache_s_users(streams):
    """While a run holds its stream (ensure_stream's shared lock, let go when the run ends),
    a clean leaves it; a stream's folder has the cache folder's access, not mkdtemp's 0700."""
    reading = cache.ensure_stream(_node("120s"), streams["sel"])
    assert not reading.built and reading.key == streams["a"].key
    out = clean(everything=True)
    assert out["busy"] == 1 and streams["a"].key not in out["keys"]
    assert (streams["a"].path / "manifest.json").exists()
    assert streams["a"].path.stat().st_mode & 0o777 == streams["root"].stat().st_mode & 0o777
    reading.release()
    assert clean(everything=True)["keys"] == [streams["a"].key]


def test_a_stream_removed_while_listed_is_left_out(streams, monkeypatch):
    import replay.app.surfaces.inventory as inventory

    real = inventory.read_manifest

    def and_remove(folder):  # a clean elsewhere takes it between the listing's two looks
        m = real(folder)
        if folder.name == streams["b"].key:
            cache.retire(folder)
        return m

    monkeypatch.setattr(inventory, "read_manifest", and_remove)
    assert streams["b"].key not in {s.key for s in cached_streams()}


def test_an_interrupted_builds_leftovers_go_unless_its_build_runs(streams):
    root, key = streams["root"], streams["a"].key
    left = root / f".{key[:12]}-x1y2z3"  # the temporary folder of a build that was killed
    left.mkdir()
    (left / "fits.parquet").write_bytes(b"partial")
    with open(cache.lock_file(root, key), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # its build is still running: keep it
        assert clean(stale=True)["leftovers"] == 0
    assert left.exists()
    assert clean(stale=True)["leftovers"] == 1
    assert not left.exists()


def test_cli_lists_and_cleans(streams, capsys):
    assert main(["cache", "list"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4 and lines[-1]["streams"] == 3 and lines[-1]["stale"] == 1
    assert main(["cache", "clean", "--stale"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert main(["cache", "clean"]) == 2  # nothing said to remove: a user error, one line
    assert "--stale, --unused-days N or --all" in capsys.readouterr().err
    assert main(["cache", "clean", "--unused-days", "-1"]) == 2
    assert "--unused-days" in capsys.readouterr().err


def test_a_stream_with_a_damaged_manifest_is_stale(streams):
    manifest = streams["b"].path / "manifest.json"
    manifest.chmod(0o644)
    manifest.write_text("{not json")
    got = {s.key: s for s in cached_streams()}
    assert not got[streams["b"].key].current and got[streams["b"].key].as_row()["wakes"] is None
    assert set(clean(stale=True)["keys"]) == {streams["b"].key, streams["old"].key}


def test_a_cache_that_cannot_be_written_is_a_user_error(streams, monkeypatch, capsys):
    import replay.app.surfaces.inventory as inventory

    def refuse(folder):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(inventory, "retire", refuse)  # as on a cache mounted read-only
    assert main(["cache", "clean", "--all"]) == 2
    assert "cannot remove streams from" in capsys.readouterr().err
    assert all(streams[k].path.exists() for k in ("a", "b", "old"))


def test_an_empty_or_missing_cache_lists_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("VOLREPLAY_CACHE_DIR", str(tmp_path / "none"))
    assert cached_streams() == []
    assert clean(everything=True)["removed"] == 0

"""Numba cache files are dropped when any source of their package changes."""

from __future__ import annotations

from calibration.jitcache import invalidate_stale


def test_cache_files_go_when_a_source_changes(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "kernel.py").write_text("X = 1\n")
    (pkg / "consts.py").write_text("Y = 2\n")
    cached = [pkg / "__pycache__" / "kernel.fold-12.py311.nbi",
              pkg / "__pycache__" / "kernel.fold-12.py311.1.nbc"]

    def write_cache():
        for f in cached:
            f.write_bytes(b"machine code")

    write_cache()
    assert invalidate_stale(pkg)  # first sight: no stamp, so nothing cached can be trusted
    assert not any(f.exists() for f in cached)
    write_cache()
    assert not invalidate_stale(pkg) and all(f.exists() for f in cached)  # unchanged sources
    (pkg / "consts.py").write_text("Y = 3\n")  # another module than the cached function's
    assert invalidate_stale(pkg) and not any(f.exists() for f in cached)

"""Keep numba's on-disk cache honest across source changes.

``@njit(cache=True)`` keys each cached function on its *own* source file only (numba's
documented limitation): when a jitted function calls another module's jitted function, or
uses another module's constants (``apply_event`` and the stream codes in the engine's kernel,
the SVI QP in the SVI fit), editing that other module leaves the caller's stale machine code
in ``__pycache__``, and it runs silently.  :func:`invalidate_stale` removes a package's numba
cache files whenever any source file of the package changed since they were written (a
digest of the sources is kept next to them), at the cost of a recompile after each edit.
Each package with numba kernels calls it first thing in its ``__init__``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

STAMP = "numba-sources.sha256"


def source_digest(package_dir: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(package_dir.rglob("*.py")):
        h.update(str(f.relative_to(package_dir)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def invalidate_stale(package_dir: str | Path) -> bool:
    """Delete ``package_dir``'s numba cache files (``*.nbi``, ``*.nbc``) if its sources changed
    since the last call; returns whether it did.  Unwritable installs are left alone."""
    root = Path(package_dir)
    stamp = root / "__pycache__" / STAMP
    digest = source_digest(root)
    try:
        if stamp.exists() and stamp.read_text() == digest:
            return False
        for f in [*root.rglob("*.nbi"), *root.rglob("*.nbc")]:
            f.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # a read-only install: numba keeps its cache elsewhere, if at all
        return False
    return True

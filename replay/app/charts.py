"""Charts for the HTML pages (run report, sweep page): matplotlib on the Agg backend, each
figure embedded as a base64 PNG so that a page is one self-contained file."""

from __future__ import annotations

import base64
import io


def png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plt_agg():
    """pyplot on the Agg backend (no display; the charts are embedded as PNG)."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # Hydra logs INFO to the run
    import matplotlib.pyplot as plt

    return plt


def fig(w: float = 10, h: float = 3.2):
    return plt_agg().subplots(figsize=(w, h))

"""``volreplay synth``: a Deribit-like synthetic BTC options market with known ground truth.

What it writes (see :func:`replay.synth.writer.synthesize`):

* ``instruments``: ``BTC-USD`` (index), ``BTC-PERPETUAL`` and the option chain
  (e.g. ``BTC-31JAN25-100000-C``), venue ``synth``, each stamped with its listing time;
* ``underlying_quotes``: the perp book every step, the index every second (bid = ask);
* ``underlying_trades``: perp prints; ``funding``: the funding rate every minute;
* ``option_quotes`` / ``option_trades``: inverse premiums on Deribit ticks, with the true mark;
* ``truth_params``, ``truth_path`` (index, variance, ``total_variance`` with the jumps' rate,
  the smile-level variance, funding every second) and ``truth_trades`` (the informed flag of
  every option trade).

The market starts at :data:`EPOCH_NS` (2025-01-06 00:00 UTC, a Monday) unless configured.
Randomness is drawn per block of :data:`BLOCK_S` seconds of market time from its own
sub-stream ``SeedSequence(seed, spawn_key=(component, block))`` (PCG64), so the content depends
only on the configuration and the seed.
"""

from __future__ import annotations

from replay.synth.chain import ChainParams
from replay.synth.config import BLOCK_S, EPOCH_NS, SCALES, ScaleSpec, SynthConfig
from replay.synth.flow import FlowParams
from replay.synth.paths import ModelParams
from replay.synth.writer import synthesize

__all__ = [
    "BLOCK_S",
    "EPOCH_NS",
    "SCALES",
    "ChainParams",
    "FlowParams",
    "ModelParams",
    "ScaleSpec",
    "SynthConfig",
    "synthesize",
]

"""What to synthesize: :class:`SynthConfig`, the scales, and the fixed epoch and block length."""

from __future__ import annotations

from dataclasses import dataclass, field

from replay.errors import ConfigError
from replay.synth.chain import ChainParams
from replay.synth.flow import FlowParams
from replay.synth.paths import MODELS, ModelParams

#: 2025-01-06 00:00:00 UTC in ns: the fixed start of every synthetic market by default.
EPOCH_NS = 1_736_121_600_000_000_000
#: Market seconds per block: the unit of randomness and of writing (bounds memory).
BLOCK_S = 300


@dataclass(frozen=True)
class ScaleSpec:
    """Default length and density of a scale."""

    hours: float
    step_ms: int  # underlying step (perp book update interval)
    quote_mult: float  # multiplies the option book update rates
    trade_mult: float  # multiplies the trade rates


SCALES: dict[str, ScaleSpec] = {
    "small": ScaleSpec(hours=2.0, step_ms=250, quote_mult=1.0, trade_mult=1.0),
    "day": ScaleSpec(hours=24.0, step_ms=250, quote_mult=1.0, trade_mult=1.0),
    "large": ScaleSpec(hours=96.0, step_ms=100, quote_mult=5.0, trade_mult=2.0),
}


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesize.  ``hours=None`` takes the scale's default length."""

    hours: float | None = None
    seed: int = 0
    model: str = "heston"
    scale: str = "small"
    start_ns: int = EPOCH_NS
    params: ModelParams = field(default_factory=ModelParams)
    chain: ChainParams = field(default_factory=ChainParams)
    flow: FlowParams = field(default_factory=FlowParams)

    def __post_init__(self) -> None:
        try:
            self._validate()
        except ValueError as e:
            raise ConfigError(f"synth: {e}") from None

    def _validate(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; choose one of {', '.join(SCALES)}")
        if self.hours is not None and not 0 < self.hours <= 24 * 366:
            raise ValueError(f"hours must be positive and at most a year, got {self.hours}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        self.params.validate(self.model)
        self.chain.validate(0.0 if self.model == "gbm" else self.params.rho)
        self.flow.validate(BLOCK_S)

    @property
    def spec(self) -> ScaleSpec:
        return SCALES[self.scale]

    @property
    def run_hours(self) -> float:
        return self.spec.hours if self.hours is None else float(self.hours)

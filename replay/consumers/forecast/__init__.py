"""Volatility forecasting: realised measures from the replayed underlying, causal forecasters
(EWMA, GARCH-family through ``arch``, HAR-RV, implied, baselines) and the consumer that
journals them and publishes them to hedgers.

* :mod:`~replay.consumers.forecast.realized` - realised variance, bipower variation, TSRV;
* :mod:`~replay.consumers.forecast.forecasters` - the forecasters, computed in batch;
* :mod:`~replay.consumers.forecast.consumer` - the schedule, the journal and the board.
"""

from replay.consumers.forecast.consumer import ForecastBoard, ForecastConsumer
from replay.consumers.forecast.forecasters import FORECASTERS, ForecastConfig

__all__ = ["FORECASTERS", "ForecastBoard", "ForecastConfig", "ForecastConsumer"]

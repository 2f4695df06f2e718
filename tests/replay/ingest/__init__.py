from replay.model.schema import MARKET_TABLES


def market_rows(store) -> int:
    """Rows in the market tables (definitions excluded)."""
    return sum(store.count(t) for t in MARKET_TABLES if t != "instruments")

"""The data model every layer shares: the store schema, instrument names, the order and fill
types, and the typed run configuration.  Imports nothing above :mod:`replay.errors` and
:mod:`replay.units`."""

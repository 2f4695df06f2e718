"""Surface streams: the cache that lets runs replay calibrated surfaces instead of refitting
(:mod:`.cache`), and the ``volreplay calibrate`` command that builds them (:mod:`.calibrate`)."""

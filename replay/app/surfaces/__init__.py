"""Surface streams: the cache that lets runs replay calibrated surfaces instead of refitting
(:mod:`.cache`), the build of a stream, serial or by epochs in parallel processes
(:mod:`.build`), and the ``volreplay calibrate`` command that builds one ahead of a run
(:mod:`.calibrate`)."""

from replay.app.cli import main

raise SystemExit(main())

from jobqueue.cli import main

raise SystemExit(main())

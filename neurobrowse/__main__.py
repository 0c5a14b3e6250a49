from neurobrowse.cli import main

raise SystemExit(main())

from medviewer.cli import main

raise SystemExit(main())

from clutchcall.cli import main

raise SystemExit(main())

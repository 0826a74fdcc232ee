from ssmsignal.cli import main

raise SystemExit(main())

from itrlib.cli import main

raise SystemExit(main())

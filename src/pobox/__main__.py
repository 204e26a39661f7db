from pobox.cli.main import main

raise SystemExit(main())

from ecoreport_agent.cli import main

raise SystemExit(main())

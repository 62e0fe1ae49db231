"""`python -m chat_service`: the container's command, and how tests and benchmarks start it too."""

from chat_service.app import main

raise SystemExit(main())

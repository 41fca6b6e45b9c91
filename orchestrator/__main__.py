"""`python -m orchestrator` is the `saga` command."""

import sys

from orchestrator.cli import main

sys.exit(main())

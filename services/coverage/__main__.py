"""``python -m services.coverage [serve|migrate]`` runs the service;
``python -m services.coverage bill|ledger|agreements|invoices|policies|sweep ...`` runs an
operations command; ``keys create|list|revoke`` manages its API keys (``--help`` for each)."""

import sys

from services.coverage import cli
from services.coverage.app import SPEC, create_app
from services.coverage.settings import CoverageSettings
from shared import keys_cli
from shared.service import main

if len(sys.argv) > 1 and sys.argv[1] == "keys":
    keys_cli.main(SPEC, CoverageSettings, sys.argv[2:])
elif len(sys.argv) > 1 and sys.argv[1] in (*cli.COMMANDS, "-h", "--help"):
    cli.main(SPEC, sys.argv[1:])
else:
    main(SPEC, CoverageSettings, create_app)

"""``python -m services.registration [serve|migrate]`` runs the service;
``python -m services.registration import FILE`` imports a CSV file (``--help``);
``python -m services.registration keys create|list|revoke`` manages its API keys."""

import sys

from services.registration import cli
from services.registration.app import SPEC, create_app
from services.registration.settings import RegistrationSettings
from shared import keys_cli
from shared.service import main

if len(sys.argv) > 1 and sys.argv[1] == "keys":
    keys_cli.main(SPEC, RegistrationSettings, sys.argv[2:])
elif len(sys.argv) > 1 and sys.argv[1] in (*cli.COMMANDS, "-h", "--help"):
    cli.main(SPEC, sys.argv[1:])
else:
    main(SPEC, RegistrationSettings, create_app)

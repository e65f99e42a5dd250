"""``python -m services.notifications [serve|migrate]`` runs the service;
``python -m services.notifications keys create|list|revoke`` manages its API keys."""

import sys

from services.notifications.app import SPEC, create_app
from services.notifications.settings import NotificationSettings
from shared import keys_cli
from shared.service import main

if len(sys.argv) > 1 and sys.argv[1] == "keys":
    keys_cli.main(SPEC, NotificationSettings, sys.argv[2:])
else:
    main(SPEC, NotificationSettings, create_app)

from services.notifications.app import SPEC, create_app
from services.notifications.settings import NotificationSettings
from shared.service import main

main(SPEC, NotificationSettings, create_app)

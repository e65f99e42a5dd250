from services.registration.app import SPEC, create_app
from services.registration.settings import RegistrationSettings
from shared.service import main

main(SPEC, RegistrationSettings, create_app)

from services.coverage.app import SPEC, create_app
from services.coverage.settings import CoverageSettings
from shared.service import main

main(SPEC, CoverageSettings, create_app)

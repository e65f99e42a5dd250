import tempfile
from pathlib import Path

from pydantic import Field

from shared.settings import ServiceSettings


class RegistrationSettings(ServiceSettings):
    http_port: int = Field(default=18001, ge=0, le=65535, description="HTTP API port.")
    min_age: int = Field(default=15, ge=0, description="Youngest age accepted at enrolment.")
    max_age_exclusive: int = Field(
        default=65, ge=1, description="Enrolment requires age below this. [decision]"
    )
    timezone: str = Field(
        default="Asia/Jakarta", description="Timezone whose date is the enrolment date (WIB)."
    )
    max_batch_requests: int = Field(
        default=1000, ge=1, le=10_000, description="Most enrolments one HTTP batch may carry."
    )
    import_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "perisai-imports",
        description="Where uploaded CSV files are kept while they are imported (deleted "
        "when done; a file left by a crash is replaced by the next upload of it).",
    )
    max_import_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="Largest CSV upload accepted (413 above)."
    )
    import_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="CSV rows enrolled per transaction."
    )

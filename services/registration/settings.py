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

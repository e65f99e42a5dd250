from pydantic import Field

from shared.settings import ServiceSettings


class CoverageSettings(ServiceSettings):
    http_port: int = Field(default=18002, ge=0, le=65535, description="HTTP port.")
    timezone: str = Field(
        default="Asia/Jakarta", description="Timezone whose calendar months are billed (WIB)."
    )
    billing_day: int = Field(
        default=1,
        ge=1,
        le=28,
        description="Day of the month (in `timezone`) from which the schedule bills the "
        "month, once; a service started later in the month catches up.",
    )
    schedule_enabled: bool = Field(
        default=True, description="Run the daily sweep and the monthly billing run."
    )
    schedule_interval_s: float = Field(
        default=600.0, gt=0, description="How often the schedule looks at the calendar."
    )

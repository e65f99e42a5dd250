from pydantic import Field

from shared.settings import ServiceSettings


class CoverageSettings(ServiceSettings):
    http_port: int = Field(default=18002, ge=0, le=65535, description="HTTP port.")
    timezone: str = Field(
        default="Asia/Jakarta", description="Timezone whose calendar months are billed (WIB)."
    )

# One image for the three services and the development stand-ins; docker-compose.yml
# picks the process with `command`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY devtools devtools
COPY infra infra
RUN pip install . && useradd --create-home --uid 10001 perisai
USER perisai

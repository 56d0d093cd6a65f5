# syntax=docker/dockerfile:1
# Flick: one asyncio process. Build: docker build -t flick .  Run: see docker-compose.yml.

# ---- build stage: a virtualenv with every dependency, then Flick itself --------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler only for the rare dependency without a wheel for this platform (tgcrypto on arm).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change,
# not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the source, installed without touching the dependencies again.
COPY . .
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv/lib

# ---- runtime stage ------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    HEALTH_ADDRESS=0.0.0.0:8080 \
    PICCOLO_CONF=flick.models.piccolo_conf

# A fixed, unprivileged uid so a bind-mounted /data can be chowned to it on the host. /data is
# private (0700): it holds the bot's Telegram session.
RUN groupadd --system --gid 10001 flick \
    && useradd --system --uid 10001 --gid flick --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin flick \
    && mkdir -p /data \
    && chown flick:flick /data \
    && chmod 700 /data

COPY --from=build /opt/venv /opt/venv
# Flick runs from the virtualenv; /app holds only piccolo_conf.py, which the piccolo CLI looks for
# in its working directory (PICCOLO_CONF above names the same configuration for other places).
COPY --from=build /src/piccolo_conf.py /app/
WORKDIR /app

USER flick
VOLUME ["/data"]
EXPOSE 8080

# The image has no curl; Python is there anyway. Any non-2xx answer or no answer is unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=8)"]

# Flick drains its actors on SIGTERM; give it time (docker stop -t 120, stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["flick", "run"]

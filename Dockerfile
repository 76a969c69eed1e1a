# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 TRYON_DATA_DIR=/data \
    TRYON_HTTP_HOST=0.0.0.0 TRYON_HTTP_PORT=8080

WORKDIR /app
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY services ./services
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app tryon \
    && mkdir -p /data && chown tryon /data

USER tryon
VOLUME ["/data"]
# /healthz, /metrics and (in webhook mode) the webhook.
EXPOSE 8080
# 503 when no poll or update completed for 90 s, the database is not writable, or
# DashScope stopped answering; `docker ps` shows "unhealthy" (see README: Health).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TRYON_HTTP_PORT', '8080'), timeout=4)"]
# Exec form: the bot is PID 1's child-free process and receives SIGTERM from `docker stop`.
ENTRYPOINT ["tryon-bot"]

# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 TRYON_DATA_DIR=/data

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
# Exec form: the bot is PID 1's child-free process and receives SIGTERM from `docker stop`.
ENTRYPOINT ["tryon-bot"]

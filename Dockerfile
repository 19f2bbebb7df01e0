# lrtower server: migrations, then the API, as a non-root user, with the SQLite file on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LRTOWER_DATABASE_URL=sqlite:////data/lrtower.db

RUN useradd --create-home --uid 10001 lrtower \
    && mkdir /data \
    && chown lrtower /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY client ./client
COPY migrations ./migrations
# This installs lrtower itself; its dependencies' ranges are in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[server,postgres]'

USER 10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"]

# Listening on all interfaces, the server requires bearer tokens: create one with
#   docker exec <container> lrtower token create NAME --scope write
CMD ["sh", "-c", "lrtower db upgrade && exec lrtower serve --host 0.0.0.0 --port 8000"]

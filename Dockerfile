# syntax=docker/dockerfile:1
# One image for every tiercdn service; the command picks the tier:
#   docker run tiercdn tiercdn-origin serve --library /library
#   docker run tiercdn tiercdn-regional --upstream http://origin:8082 --name regional-1
#   docker run tiercdn tiercdn-edge --upstream http://regional:8081 --name edge-1
# docker-compose.yml runs the whole CDN (origin, regional, two edges,
# Prometheus, Grafana) from this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY edge/ edge/
COPY regional/ regional/
COPY origin/ origin/
COPY loadtest/ loadtest/
# ffmpeg comes with the imageio-ffmpeg wheel (a static build), so
# `tiercdn-origin sample|package` needs no system packages.
RUN pip install . && rm -rf /src

# Run as an unprivileged user. /library (the origin's titles) and /cache (disk
# tiers) exist and belong to it, so named volumes mounted there start out
# writable by it (Docker copies the mount point's owner into a new volume).
RUN useradd --system --create-home --uid 10001 --user-group tiercdn \
    && mkdir -p /library /cache \
    && chown tiercdn:tiercdn /library /cache
USER tiercdn
WORKDIR /home/tiercdn

# Inside a container, 127.0.0.1 (the services' default) is reachable from
# nowhere else: not from other containers, not through published ports. So
# every listener binds 0.0.0.0 here, the same as `--host 0.0.0.0
# --admin-host 0.0.0.0`. Keep admin ports unpublished, or published on the
# host's 127.0.0.1 only (docker-compose.yml does that): /metrics and /stats
# are open, and /purge and /prewarm are guarded only by --admin-token.
ENV TIERCDN_HOST=0.0.0.0 \
    TIERCDN_ADMIN_HOST=0.0.0.0

# Proxy ports (edge, regional, origin) and admin ports (port + 1000).
EXPOSE 8080 8081 8082 9080 9081 9082

# The admin listener's /healthz. Its port is TIERCDN_ADMIN_PORT: set that env
# var (rather than --admin-port) and the service and this check agree; the
# fallback 9080 is the edge's default admin port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TIERCDN_ADMIN_PORT', '9080'), timeout=2)"]

# No ENTRYPOINT: the command is a whole tiercdn command line, so compose's
# `command:` reads like a shell invocation. Without one, list the commands.
CMD ["tiercdn", "--help"]

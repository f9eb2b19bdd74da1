# One image for every tiercdn service; the command picks the tier. These run as written
# (scripts/compose-smoke runs the compose stack; docker-compose.yml wires the same):
#   docker build -t tiercdn .
#   docker network create tiercdn
#   docker run -d --init --network tiercdn --name origin tiercdn sh -c 'tiercdn-origin sample --out /library/sample && exec tiercdn-origin serve --library /library'
#   docker run -d --init --network tiercdn --name regional tiercdn tiercdn-regional --upstream http://origin:8082
#   docker run -d --init --network tiercdn --name edge -p 8080:8080 tiercdn tiercdn-edge --upstream http://regional:8081
#   curl -sI http://localhost:8080/sample/manifest.mpd    # once `docker ps` says (healthy)
#   docker rm -f edge regional origin && docker network rm tiercdn
#
# BASE_IMAGE is any Debian-based image with python >= 3.11 and pip as `python`
# and `pip` on PATH, and useradd. Without a registry (air-gapped), point it at
# your own copy: docker build --build-arg BASE_IMAGE=registry.example/python:3.11-slim .
# No `# syntax=` directive: BuildKit would fetch that frontend image from Docker Hub
# first, which fails without a registry; nothing here needs more than the builtin one.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The pinned dependencies first, in a layer of their own: editing tiercdn's code
# rebuilds only the layer below. The same lock as scripts/bootstrap --runtime.
# ffmpeg comes with the imageio-ffmpeg wheel (a static build), so
# `tiercdn-origin sample|package` needs no system packages.
COPY requirements/runtime.lock requirements/
RUN pip install -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY edge/ edge/
COPY regional/ regional/
COPY origin/ origin/
COPY loadtest/ loadtest/
RUN pip install --no-deps . && rm -rf /src
COPY docker/healthcheck.py /usr/local/lib/tiercdn/healthcheck.py

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

# Proxy ports (edge, regional, origin) and their default admin ports.
EXPOSE 8080 8081 8082 9080 9081 9082

# Every tiercdn node running in the container answers its admin /healthz. The
# script finds the nodes in /proc and reads each one's admin port from its own
# flags, environment or --config file, or its tier's default (edge 9080,
# regional 9081, origin 9082), so it holds whichever service runs the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/lib/tiercdn/healthcheck.py"]

# No ENTRYPOINT: the command is a whole tiercdn command line, so compose's
# `command:` reads like a shell invocation. Without one, list the commands.
CMD ["tiercdn", "--help"]

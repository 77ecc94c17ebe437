# syntax=docker/dockerfile:1
#
# rdev container image.
#
#   docker build -t registry.example.com/rdev:0.1.0 .
#
# Two stages: the builder resolves the locked dependencies with uv into /app/.venv; the
# runtime stage gets only that virtual environment, git, tini and a non-root user, so no
# compiler, uv or pip cache ends up in the final image. Both stages use the same base image so the
# venv's interpreter symlink (/usr/local/bin/python3.11) is valid in the runtime stage.

# --------------------------------------------------------------------------- builder
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install uv==0.13.9

WORKDIR /app

# Dependencies first: this layer is rebuilt only when pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-editable --no-install-project

# Then the project itself, installed as a regular (non-editable) package into the venv.
COPY README.md ./
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable

# --------------------------------------------------------------------------- runtime
FROM python:3.11-slim-bookworm AS runtime

# git: the local backend shells out to git. tini: PID 1, which reaps orphaned grandchildren
# of the local backend's commands and forwards signals to rdev. Nothing else is installed, and
# apt's lists, caches and logs go in the same layer, so they never reach the image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git tini \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log

# Non-root user with a fixed uid/gid (10001) matching the Kubernetes securityContext.
# Its home is the data directory, which is an emptyDir in the cluster because the root
# filesystem is mounted read-only there.
RUN groupadd --system --gid 10001 rdev \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/rdev \
        --no-create-home --shell /usr/sbin/nologin rdev \
    && mkdir -p /var/lib/rdev \
    && chown 10001:10001 /var/lib/rdev

# The venv stays owned by root: the service user can run it but not modify it.
COPY --from=builder /app/.venv /app/.venv

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RDEV_DATA_DIR=/var/lib/rdev

WORKDIR /var/lib/rdev
USER 10001
EXPOSE 8080

# Used by plain Docker only; Kubernetes ignores it and uses the probes in deploy/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8080'), timeout=4)"]

# tini as PID 1: rdev alone would leave zombies, and a signal to PID 1 without a handler is
# ignored. The preStop hook in deploy/ runs `sleep`, which the Debian base image has.
ENTRYPOINT ["/usr/bin/tini", "--", "rdev"]
CMD ["serve", "--host", "0.0.0.0"]

# One file, three images, each a venv copied onto the bare base:
#   flaky-backend  the demo backend: only the libraries it imports
#   gateway        the gateway for production: runtime libraries, no pip, no tests, no test tools
#   gateway-test   the gateway plus the test tools and the repository's files its suite reads;
#                  the compose service `gateway` runs it, so `pytest tests` works inside it
# The venvs are built in stages of their own: pip, its caches, the requirement lists, the build
# tree and egg-info stay there. No compiler in any stage: every dependency ships wheels.
# deploy/slim-venv.sh drops what no import reads: C sources and the compiled modules' debugging
# sections (binutils' strip, in the build stages only).
# Compose v1 builds with the classic builder, which builds every stage above the target it is
# asked for; the targets share those layers through the cache.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app

# The requirement lists, read from pyproject.toml so the layers below change only when they do.
# deploy/image_requirements.py says which list holds what.
FROM base AS requirements
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# binutils for strip, in the build stages only. Not pinned: the version is whatever the base's
# Debian release carries, and nothing of it reaches the images.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
COPY deploy/slim-venv.sh /usr/local/bin/slim-venv
COPY pyproject.toml deploy/image_requirements.py /build/
RUN python /build/image_requirements.py /build/pyproject.toml /build

# The project itself as a wheel, installed into each venv without its dependencies.
FROM requirements AS wheel
COPY README.md /build/
COPY src/ /build/src/
COPY flaky_backend/ /build/flaky_backend/
RUN pip wheel --no-deps --wheel-dir /build/dist /build

FROM requirements AS backend-venv
RUN python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install -r /build/backend.txt \
    && slim-venv /opt/venv
COPY --from=wheel /build/dist/ /build/dist/
RUN pip --python /opt/venv/bin/python install --no-deps /build/dist/*.whl

FROM base AS runtime
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent app

FROM runtime AS flaky-backend
COPY --from=backend-venv /opt/venv/ /opt/venv/
USER 10001
EXPOSE 8001
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/health', timeout=2)"]
CMD ["flaky-backend", "--host", "0.0.0.0", "--port", "8001"]

FROM requirements AS gateway-venv
RUN python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install -r /build/runtime.txt \
    && slim-venv /opt/venv
COPY --from=wheel /build/dist/ /build/dist/
RUN pip --python /opt/venv/bin/python install --no-deps /build/dist/*.whl

FROM runtime AS gateway
COPY --from=gateway-venv /opt/venv/ /opt/venv/
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["resilient-gateway", "--host", "0.0.0.0", "--port", "8000"]

FROM gateway-venv AS test-venv
RUN pip --python /opt/venv/bin/python install -r /build/test.txt \
    && slim-venv /opt/venv

# The suite reads more than tests/ (deploy/, the compose file, the README): the whole build
# context, which .dockerignore keeps to the repository's own files.
FROM runtime AS gateway-test
COPY --from=test-venv /opt/venv/ /opt/venv/
COPY --chown=10001:10001 . /app/
# /app itself too (only the directory): pytest's cache and hypothesis's examples go there.
RUN chown 10001:10001 /app
USER 10001
ENV HOME=/tmp
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["resilient-gateway", "--host", "0.0.0.0", "--port", "8000"]

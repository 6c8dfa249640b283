# syntax=docker/dockerfile:1
# One file, two targets: `gateway` (with tests/ and the test tools) and `flaky-backend`.
# Dependencies are installed in a layer of their own, so changing the source does not reinstall
# them. Every dependency ships wheels for this platform: no compiler in any stage.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app

FROM base AS deps
COPY pyproject.toml README.md ./
# Read the dependency lists from pyproject.toml, so this layer changes only when they do.
RUN python -m venv /opt/venv \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies']))" > /tmp/runtime.txt \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['optional-dependencies']['test']))" > /tmp/test.txt \
    && pip install -r /tmp/runtime.txt

FROM deps AS deps-test
RUN pip install -r /tmp/test.txt

FROM deps AS flaky-backend
COPY src/ src/
COPY flaky_backend/ flaky_backend/
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home app
USER 10001
EXPOSE 8001
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/health', timeout=2)"]
CMD ["flaky-backend", "--host", "0.0.0.0", "--port", "8001"]

FROM deps-test AS gateway
COPY src/ src/
COPY flaky_backend/ flaky_backend/
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --create-home app
COPY tests/ tests/
COPY docker-compose.yml .env.example verify.sh ./
RUN chown -R app /app
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["resilient-gateway", "--host", "0.0.0.0", "--port", "8000"]

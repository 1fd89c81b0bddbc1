# One image for both processes: `reglab serve` (the default command) and
# `reglab worker --server URL`.
#
#   docker build -t reglab:cpu .
#   docker build -t reglab:gpu --build-arg TF_VARIANT=gpu .   # CUDA wheels, for GPU workers
FROM python:3.11-slim

# cpu: plain tensorflow. gpu: tensorflow[and-cuda], which brings the CUDA and
# cuDNN libraries as pip wheels (the host needs only the NVIDIA driver and the
# NVIDIA Container Toolkit).
ARG TF_VARIANT=cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    REGLAB_DATA_DIR=/app/data \
    REGLAB_DATABASE_URL=sqlite:////app/data/reglab.db

WORKDIR /app

# TensorFlow first: the largest layer, and it changes only with TF_VARIANT.
RUN set -eux; \
    case "$TF_VARIANT" in \
        cpu) pip install --no-cache-dir "tensorflow>=2.16" ;; \
        gpu) pip install --no-cache-dir "tensorflow[and-cuda]>=2.16" ;; \
        *) echo "TF_VARIANT must be cpu or gpu, not '$TF_VARIANT'" >&2; exit 1 ;; \
    esac

# Then the other dependencies, read from pyproject.toml alone, so that editing
# the source does not reinstall them: the client's, and the server's and the worker's
# extras (one image serves both; TensorFlow above already satisfies the worker's).
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['server'] + p['optional-dependencies']['worker']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself, editable: app/migrate.py finds migrations/ and alembic.ini,
# and app/main.py finds static/, next to the app package in /app.
COPY . .
RUN pip install --no-cache-dir --no-deps -e . \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin reglab \
    && mkdir -p /app/data \
    && chown reglab:reglab /app/data

# Data (SQLite file, artifacts) lives in /app/data: mount a volume there.
USER reglab
EXPOSE 8000

# Meaningful for the API server; compose turns it off for workers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"]

CMD ["reglab", "serve", "--host", "0.0.0.0", "--port", "8000"]

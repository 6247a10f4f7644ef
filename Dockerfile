# One image for every app service (web API, Celery worker and beat, Flower, WhatsApp sandbox);
# docker-compose.yml picks the process with `command`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from the lock alone: every package pinned and checked against its hashes, the
# project's own pins (see `make lock`). A code change does not re-download them: this layer is rebuilt
# only when requirements/runtime.txt changes.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --require-hashes --no-deps -r requirements/runtime.txt

COPY . .
# The project itself, built with the setuptools the lock installed and nothing else; `pip check` stops
# the build if pyproject.toml names a dependency the lock lacks (run `make lock`).
RUN pip install --no-deps --no-build-isolation . \
    && pip check \
    && useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app

# The code stays root-owned so the service account cannot modify it.
USER app

EXPOSE 5000 5555 8700

CMD ["gunicorn", "-k", "gevent", "-w", "2", "-b", "0.0.0.0:5000", "webapi:create_app()"]

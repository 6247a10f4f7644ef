# One image for every app service (web API, Celery worker and beat, Flower, WhatsApp sandbox);
# docker-compose.yml picks the process with `command`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject.toml alone, so a code change does not
# re-download them: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install . \
    && useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app

# The code stays root-owned so the service account cannot modify it.
USER app

EXPOSE 5000 5555 8700

CMD ["gunicorn", "-k", "gevent", "-w", "2", "-b", "0.0.0.0:5000", "webapi:create_app()"]

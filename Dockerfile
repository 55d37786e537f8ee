# One image for every Schakel service; pick the service with the command:
#   docker run schakel python -m services.routing
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SCHAKEL_STATE_DIR=/var/lib/schakel \
    SCHAKEL_CONFIG=/app/examples/gemeente-voorbeeld.yaml \
    SCHAKEL_LOG_FORMAT=json \
    SCHAKEL_HTTP_HOST=0.0.0.0

WORKDIR /app

# Dependencies first (from pyproject.toml, pinned by requirements.lock), so code changes reuse this layer.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.in \
    && pip install --constraint requirements.lock --requirement /tmp/requirements.in \
    && rm /tmp/requirements.in

COPY shared/ shared/
COPY services/ services/
COPY schakel/ schakel/
COPY examples/ examples/
RUN pip install --no-deps --constraint requirements.lock . \
    && useradd --system --uid 10001 --home-dir /var/lib/schakel schakel \
    && mkdir -p /var/lib/schakel \
    && chown schakel:schakel /var/lib/schakel

USER schakel
VOLUME ["/var/lib/schakel"]
EXPOSE 8001 8002 8003 8004

CMD ["python", "-m", "services.intake"]

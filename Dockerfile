# The backend image: web, worker and beat run from it with different commands.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# curl serves the container health check; psycopg[binary] needs no libpq.
RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ecoreport ./ecoreport
COPY agents ./agents
RUN pip install . ./agents
COPY manage.py ./
COPY templates ./templates
COPY static ./static
# WhiteNoise serves the collected files (the app's CSS/JS and plotly.js) when DEBUG is off.
RUN DEBUG=1 ECOREPORT_VAR_DIR=/app/var python manage.py collectstatic --noinput -v0
RUN useradd --system --uid 10001 ecoreport && mkdir -p /app/var && chown ecoreport /app/var
USER ecoreport
ENV ECOREPORT_VAR_DIR=/app/var
EXPOSE 8000
CMD ["gunicorn", "ecoreport.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "2"]

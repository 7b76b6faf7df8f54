# One image for every service: dns-cert-checker reporter|resolver|scanner|collector|run.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package needs: tests, docs and deploy files stay out of the image.
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY lab ./lab
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin dcc

USER 10001
# SIGTERM reaches the Python process directly (exec form): it drains, then exits 0.
ENTRYPOINT ["dns-cert-checker"]
CMD ["--help"]

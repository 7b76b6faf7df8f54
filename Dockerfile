# One image for every service (dns-cert-checker reporter|resolver|scanner|collector|run) and for
# the compose demo's TLS lab (python -m lab).
#
# Two stages. The builder makes a virtualenv holding the project and its dependencies: every one
# is a manylinux wheel or pure Python, so no compiler is needed even here. The final image is
# python:3.11-slim plus that venv alone (no build tools, no pip cache, no sources), run by an
# unprivileged user.

FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
WORKDIR /src
# Only what the package is made of (.dockerignore keeps tests, docs, .venv and .git out of the context).
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY lab ./lab
# Not editable: the code goes into the venv. The venv's own pip and setuptools are not needed to run.
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip uninstall --yes pip setuptools


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Writable places for volumes (state, reports, the lab's CA): a named volume mounted there takes
# their owner, so the unprivileged user can write it.
RUN groupadd --system --gid 10001 dcc \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin dcc \
 && install -d -o 10001 -g 10001 /var/lib/dcc /reports

# Same base image and path in both stages: the venv's interpreter links stay valid.
COPY --from=builder /opt/venv /opt/venv

USER 10001
# SIGTERM reaches the Python process directly (exec form): it drains, then exits 0.
ENTRYPOINT ["dns-cert-checker"]
CMD ["--help"]

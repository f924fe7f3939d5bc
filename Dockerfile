# syntax=docker/dockerfile:1
#
# s3sink container image.
#
#   docker build -t s3sink .
#   docker run --rm -v "$PWD/deploy/s3sink.properties:/etc/s3sink/config.properties:ro" \
#     s3sink run -c /etc/s3sink/config.properties
#
# Configuration: a mounted file (Kafka Connect JSON, .properties or YAML) and/or S3SINK_*
# environment variables (key upper-cased, '.' -> '_'). The default /etc/s3sink/config.json
# only names the connector, so an environment-only setup (ECS, Kubernetes) works too.
# Secrets come from the environment or the default AWS credential chain, never from the image.

# --- builder: a virtualenv with s3sink and its locked dependencies -------------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The lock first: installing it is the slow layer and changes least often.
COPY constraints.txt ./
COPY pyproject.toml README.md ./
COPY s3sink ./s3sink
COPY partitioners ./partitioners
COPY formats ./formats
RUN pip install --no-cache-dir -c constraints.txt . \
    && s3sink --help > /dev/null

# --- runtime -------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="s3sink" \
      org.opencontainers.image.description="Kafka-to-S3 archival sink with exactly-once commit markers" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    S3SINK_HTTP_LISTEN=0.0.0.0:8080

# A fixed, unprivileged uid/gid that the Kubernetes/ECS definitions can name.
RUN groupadd --system --gid 10001 s3sink \
    && useradd --system --uid 10001 --gid s3sink --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin s3sink

COPY --from=builder /opt/venv /opt/venv
COPY deploy/config.json /etc/s3sink/config.json
COPY deploy/healthcheck.py /opt/s3sink/healthcheck.py

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# `s3sink run` stops consuming, commits what it buffered and exits 0 on SIGTERM.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/s3sink/healthcheck.py"]

# Exec form: s3sink is PID 1's direct child under `--init`/tini, or PID 1 itself, and gets the
# signals, not a shell.
ENTRYPOINT ["s3sink"]
CMD ["run", "-c", "/etc/s3sink/config.json"]

# The dpagent demo workload (and batch runner): `dpagent demo` serving /metrics on :8000.
#
#   docker build -t dpagent-demo:0.1.0 .
#   docker run --rm -p 127.0.0.1:8000:8000 dpagent-demo:0.1.0
#
# Runs as the unprivileged user dpagent (uid 10001); logs go to /var/log/dpagent, which
# docker compose shares read-only with Alloy.
FROM python:3.12.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 dpagent \
    && useradd --system --uid 10001 --gid dpagent --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin dpagent \
    && mkdir -p /app /var/log/dpagent \
    && chown dpagent:dpagent /var/log/dpagent

WORKDIR /app

# The package first (its layer changes only with the code), then the sample products file
# that `dpagent run` reads in the batch service.
COPY pyproject.toml README.md ./
COPY dpagent ./dpagent
RUN pip install --no-compile . \
    && rm -rf /app/dpagent /app/build
COPY examples ./examples

USER dpagent

# Inside a container /metrics must listen beyond loopback; compose publishes it on
# 127.0.0.1 only.
ENV DPAGENT_METRICS_ADDR=0.0.0.0 \
    DPAGENT_METRICS_PORT=8000 \
    DPAGENT_LOG_DIR=/var/log/dpagent
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('DPAGENT_METRICS_PORT', '8000'), timeout=2)"]

ENTRYPOINT ["dpagent"]
CMD ["demo", "--profile", "healthy"]

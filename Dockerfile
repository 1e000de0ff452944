# The inferloop image: worker, joiner, trainer and the CLI (`docker run IMAGE worker|joiner|train|trainer|...`), so the
# core install plus the worker and trainer extras (the local stack's and the demo's are for a developer's machine).
# torch comes from PyTorch's CPU index here (the CUDA build is several GB); use the default index for GPU nodes.
FROM python:3.11-slim

# What the processes write lives under /tmp, the one folder the chart mounts writable (readOnlyRootFilesystem):
# inferloop's state (INFERLOOP_HOME, faust's folder per app included: <home>/faust/<app id>).
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INFERLOOP_HOME=/tmp/inferloop \
    INFERLOOP_CACHE_DIR=/tmp/inferloop-cache

# The non-root user every container runs as (compose's `user:`, the chart's runAsUser), and the mount point of the
# model repository (INFERLOOP_TRITON__MODEL_REPOSITORY=/models) owned by it: Docker gives a fresh named volume
# mounted there the folder's owner, so the trainer can write versions without running as root.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin inferloop \
 && install -d -o 10001 -g 10001 -m 0755 /models
WORKDIR /opt/inferloop
COPY pyproject.toml README.md ./
COPY inferloop ./inferloop
COPY streams ./streams
COPY trainer ./trainer
COPY infra ./infra
COPY cli ./cli
COPY helm/inferloop/files ./helm/inferloop/files
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.5" \
 && pip install ".[worker,trainer]"

USER 10001:10001
# worker, joiner and trainer metrics (INFERLOOP_STREAMS__METRICS_PORT, _FEEDBACK__, _TRAINER__)
EXPOSE 9100 9101 9102
ENTRYPOINT ["inferloop"]
CMD ["worker"]

# bruin-materialize on top of bruin's official image: `docker run IMAGE [BRUIN_RUN_ARGS...]` reads the
# connections from Vault, writes them to tmpfs and becomes `bruin run --config-file FILE ...`.
# docs/deployment.md has the commands. Set BRUIN_VERSION to a real tag of ghcr.io/bruin-data/bruin
# (bruin's release tags, e.g. v0.11.761); the default is only a starting point.
ARG BRUIN_VERSION=v0.11.761
FROM ghcr.io/bruin-data/bruin:${BRUIN_VERSION}

# The official image is Debian (trixie-slim) with bruin at /home/bruin/.local/bin/bruin, owned by the
# user `bruin` (uid/gid 1000, the first user adduser makes). Running as that numeric id keeps bruin's
# own files (its uv and Python installs under /home/bruin) usable and lets Kubernetes' runAsNonRoot
# check the user without a runAsUser.
ARG APP_UID=1000
ARG APP_GID=1000

USER 0

# python3-venv: the image has python3 (via python3-dev) but not ensurepip. tini: PID 1 must forward
# SIGTERM to bruin and reap its children. Versions come from the base's Debian release; pinning them
# would break the build at the next Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/bruin-materialize

# Dependencies first: this layer stays cached while the code changes.
COPY requirements.txt ./
RUN python3 -m venv /opt/bruin-materialize/venv \
 && /opt/bruin-materialize/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt

# Owned by root and not writable by the runtime user; bytecode compiled now, since it cannot be later.
COPY materialize.py ./
COPY bruin_materialize/ ./bruin_materialize/
COPY templates/ ./templates/
RUN /opt/bruin-materialize/venv/bin/python -m compileall -q /opt/bruin-materialize/bruin_materialize

# BRUIN_MATERIALIZE_RUNTIME_DIR: the config file lives in memory only (Docker's /dev/shm is a tmpfs;
# in Kubernetes mount an emptyDir with medium: Memory there).
ENV BRUIN_BIN=/home/bruin/.local/bin/bruin \
    BRUIN_MATERIALIZE_RUNTIME_DIR=/dev/shm \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The bruin project: mount it here, or COPY it here in an image built FROM this one.
WORKDIR /workspace

USER ${APP_UID}:${APP_GID}

ENTRYPOINT ["/usr/bin/tini", "--", "/opt/bruin-materialize/venv/bin/python", "/opt/bruin-materialize/materialize.py", "exec"]
CMD ["."]

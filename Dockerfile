# bruin-materialize on top of bruin's official image: `docker run IMAGE exec -- [BRUIN_RUN_ARGS...]`
# reads the connections from Vault, writes them to tmpfs, runs `bruin run --config-file FILE ...` as
# its child and removes the file when bruin exits. docs/deployment.md has the commands.
#
# BRUIN_VERSION is a tag of ghcr.io/bruin-data/bruin, one per bruin release. The default, v0.11.731
# (commit a74787b), is the release the shipped schema snapshot comes from
# (bruin_materialize/data/connections-schema.md). Use the bruin your pipelines are tested with: the
# releases are the tags at https://github.com/bruin-data/bruin/releases (or run `git ls-remote --tags
# https://github.com/bruin-data/bruin`); `docker buildx imagetools inspect ghcr.io/bruin-data/bruin:TAG`
# shows the image exists. The init container checks against the bruin of this image.
ARG BRUIN_VERSION=v0.11.731

# --- build: a virtual environment with the package installed -------------------------------------
# The same base as the runtime stage, so the venv's python is the runtime's /usr/bin/python3.
FROM ghcr.io/bruin-data/bruin:${BRUIN_VERSION} AS build

# Root for apt and /opt; this stage is thrown away, only the venv is copied out of it.
# hadolint ignore=DL3002
USER 0

# python3-venv: the image has python3 (via python3-dev) but not ensurepip. Versions come from the
# base's Debian release; pinning them would break the build at the next Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, pinned: this layer stays cached while the code changes.
# pycurl only as a wheel (--only-binary): its manylinux_2_28 wheels (glibc 2.28+, x86_64 and aarch64)
# bundle libcurl and OpenSSL, so neither a compiler nor libcurl is needed here or at run time, and a
# platform without a wheel fails this step instead of half-building. On musl (Alpine) there is no
# such wheel: pycurl builds from source against the system's libcurl there, e.g.
#   apk add --no-cache build-base curl-dev openssl-dev
#   PYCURL_SSL_LIBRARY=openssl pip install --no-binary pycurl -r requirements.txt
# and the runtime stage needs `apk add libcurl` (docs/performance.md, "Platforms").
COPY requirements.txt ./
RUN python3 -m venv /opt/bruin-materialize/venv \
 && /opt/bruin-materialize/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
    --only-binary pycurl -r requirements.txt

# The package itself (--no-deps: its dependencies are the pinned ones above), bytecode compiled by pip.
# Then pip and setuptools leave the venv: nothing needs them at run time.
COPY pyproject.toml README.md LICENSE ./
COPY bruin_materialize/ ./bruin_materialize/
COPY templates/ ./templates/
RUN /opt/bruin-materialize/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && /opt/bruin-materialize/venv/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

# --- runtime --------------------------------------------------------------------------------------
FROM ghcr.io/bruin-data/bruin:${BRUIN_VERSION}

# The official image is Debian (trixie-slim) with bruin at /home/bruin/.local/bin/bruin, owned by the
# user `bruin` (uid/gid 1000, the first user adduser makes). Running as that numeric id keeps bruin's
# own files (its uv and Python installs under /home/bruin) usable and lets Kubernetes' runAsNonRoot
# check the user without a runAsUser.
ARG APP_UID=1000
ARG APP_GID=1000

USER 0

# tini: PID 1 must forward SIGTERM to bruin and reap its children.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini \
 && rm -rf /var/lib/apt/lists/*

# Owned by root and not writable by the runtime user.
COPY --from=build /opt/bruin-materialize/venv /opt/bruin-materialize/venv

# PATH: `bruin-materialize` is the venv's command. BRUIN_MATERIALIZE_RUNTIME_DIR: the config file
# lives in memory only (Docker's /dev/shm is a tmpfs; in Kubernetes mount an emptyDir with
# medium: Memory there).
ENV PATH=/opt/bruin-materialize/venv/bin:$PATH \
    BRUIN_BIN=/home/bruin/.local/bin/bruin \
    BRUIN_MATERIALIZE_RUNTIME_DIR=/dev/shm \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The bruin project: mount it here, or COPY it here in an image built FROM this one.
WORKDIR /workspace

USER ${APP_UID}:${APP_GID}

# Other commands replace CMD: `docker run IMAGE check`, `... render --output FILE` (the init container).
ENTRYPOINT ["tini", "--", "bruin-materialize"]
CMD ["exec", "."]

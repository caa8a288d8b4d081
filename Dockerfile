# The Renkei image for compose.yaml: every service runs one `renkei …` command (the command is
# compose.yaml's). No secret is baked in: credentials, keys and stores live in the state folder,
# mounted at /state at run time. socat publishes My Portal, which binds to loopback only.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends socat \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY renkei renkei
COPY broker broker
COPY schemas schemas
COPY processors processors
COPY holders holders
COPY audit audit
COPY registry registry
COPY authority authority
COPY cards cards
COPY portal portal
RUN pip install . && cd / && rm -rf /src

RUN useradd --create-home --uid 1000 --user-group renkei
USER renkei
WORKDIR /home/renkei
ENV RENKEI_STATE=/state

CMD ["renkei", "--help"]

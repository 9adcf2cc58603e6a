# malhug in a container:
#   docker build -t malhug .
#   docker run --rm -v "$PWD:/scan:ro" malhug scan /scan
#   docker run --rm -e HF_TOKEN malhug scan hf://org/name
# Nothing it scans is ever run; the container only keeps the scanner's own files apart.
FROM python:3.12-slim

LABEL org.opencontainers.image.title="malhug" \
      org.opencontainers.image.description="Find malicious code in ML models and datasets without running it" \
      org.opencontainers.image.licenses="MIT"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALHUG_CACHE_DIR=/tmp/malhug-cache

WORKDIR /opt/malhug
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m pip install . \
    && useradd --create-home --uid 10001 malhug

USER malhug
WORKDIR /scan
ENTRYPOINT ["malhug"]
CMD ["--help"]

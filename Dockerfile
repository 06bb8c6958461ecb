FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY auren_core auren_core
COPY auren_tui auren_tui
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []

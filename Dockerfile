# The reader as a web service: digits serve with the base install (ONNX Runtime, no TensorFlow).
#   docker build -t digits .
#   docker run -p 8000:8000 digits          (DIGITS_WORKERS, DIGITS_PORT: see the README's Deploy)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DIGITS_HOST=0.0.0.0 \
    DIGITS_PORT=8000 \
    DIGITS_WORKERS=2

WORKDIR /app
COPY requirements/lock.txt requirements/lock.txt
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# The base install only, every version from the lock file; .ci/lean-install runs these same commands.
RUN pip install --no-cache-dir -c requirements/lock.txt . \
    && useradd --create-home --uid 10001 digits

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['DIGITS_PORT']}/api/health\", timeout=4)"]
CMD ["digits", "serve"]

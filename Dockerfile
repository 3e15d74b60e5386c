# One image for every leaseq service of docker-compose.yml: workers, reaper, web, producer.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY leaseq ./leaseq
COPY examples ./examples
RUN pip install --no-cache-dir '.[web]'
USER nobody
ENTRYPOINT ["leaseq"]
CMD ["--help"]

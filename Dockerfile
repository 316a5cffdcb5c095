FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY jobqueue ./jobqueue
COPY migrations ./migrations
# The postgres extra too: the same image runs on either backend (DATABASE_URL decides).
RUN pip install --no-cache-dir ".[postgres]"
ENV DATABASE_URL=sqlite:////data/jobs.db HOST=0.0.0.0 PORT=8000
VOLUME /data
EXPOSE 8000
# exec form: the server gets SIGTERM directly and drains its worker pool.
CMD ["python", "-m", "jobqueue", "serve"]

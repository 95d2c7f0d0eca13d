# The suite in a container, for master/worker runs across machines (docker-compose.yml,
# deploy/kubernetes/). The same image is the master and the workers.
FROM python:3.11-slim
WORKDIR /suite
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# 8089: web UI (master); 5557: workers connect to the master.
EXPOSE 8089 5557
ENTRYPOINT ["locust", "-f", "locustfile.py"]

"""qwq's HTTP API: REST routes, frame formats and the Prometheus /metrics exposition."""

"""Infrastructure of inferloop: local launchers for Kafka and Triton, Prometheus and Grafana config."""

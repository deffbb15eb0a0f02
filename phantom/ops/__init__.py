"""Operating the service: Prometheus rules from measured figures, the Prometheus launcher, the Grafana dashboard."""

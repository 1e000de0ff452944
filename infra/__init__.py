"""Infrastructure of inferloop: the local stack's launchers (:mod:`infra.local`, on the core library), and the
deployment assets beside them (Prometheus and Grafana config, Dockerfiles, compose)."""

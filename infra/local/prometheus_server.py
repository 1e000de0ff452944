"""A real Prometheus (Debian's package) scraping the local stack: ``inferloop up --with-prometheus``.

The scrape config is ``infra/prometheus/prometheus.yml`` with each job's target moved to the configured port
(its ``namespace: local`` label kept);
the alert rules are ``infra/prometheus/rules/*.yml``, copied beside it. Data lives in ``<home>/prometheus``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from infra.local.errors import RuntimeMissing
from infra.local.process import LocalService, Port
from infra.local.triton_server import http_ok

PROMETHEUS_DIR = Path(__file__).resolve().parents[1] / "prometheus"


def find_prometheus() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise RuntimeMissing("prometheus", "install Debian's `prometheus` package (`make setup` does)")
    return found


def render_config(targets: Mapping[str, Sequence[str]], scrape_interval_s: float) -> str:
    """The repository's scrape config with each job's targets replaced by ``targets[job]`` (jobs not named keep
    theirs). The target labels stay: the rules and the dashboard select by ``namespace``."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = f"{scrape_interval_s:g}s"
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            labels = job["static_configs"][0].get("labels", {})
            job["static_configs"] = [{"targets": list(targets[job["job_name"]]), "labels": labels}]
    text: str = yaml.safe_dump(config, sort_keys=False)
    return text


class PrometheusServer(LocalService):
    name = "prometheus"

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        targets: Mapping[str, Sequence[str]],
        host: str = "127.0.0.1",
        port: int = 9090,
        scrape_interval_s: float = 5.0,
        port_env_var: str | None = None,
    ) -> None:
        super().__init__(log_path)
        self.data_dir, self.targets, self.host, self.port = data_dir, dict(targets), host, port
        self.scrape_interval_s, self.port_env_var = scrape_interval_s, port_env_var

    @property
    def config_path(self) -> Path:
        return self.data_dir / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def marker(self) -> str:
        return f"--web.listen-address={self.host}:{self.port}"

    def ports(self) -> Sequence[Port]:
        return [Port("http", self.host, self.port, self.port_env_var)]

    def prepare(self) -> None:
        rules = self.data_dir / "rules"
        rules.mkdir(parents=True, exist_ok=True)
        for rule_file in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
            shutil.copyfile(rule_file, rules / rule_file.name)
        self.config_path.write_text(render_config(self.targets, self.scrape_interval_s))

    def command(self) -> list[str]:
        return [
            find_prometheus(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir / 'data'}",
            "--storage.tsdb.retention.time=7d",
            "--web.enable-lifecycle",
            self.marker,
        ]

    def is_ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

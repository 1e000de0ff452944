"""The bench's arithmetic: per-run figures, medians over rounds, the paired ratios and the targets they meet."""

from __future__ import annotations

from typing import Any

from cli.bench.run import Backlog, BenchResult, median_figures


def test_a_backlog_run_reports_rate_and_cpu_per_image() -> None:
    run = Backlog(images=20_000, seconds=4.0, cpu_s=4.4, consumer_cpu_s=3.2)
    assert run.figures() == {"images_per_s": 5000.0, "cpu_us_per_image": 220.0, "process_cpu_us_per_image": 160.0}


def test_each_figure_is_the_median_of_the_rounds_on_its_own() -> None:
    rounds = [
        Backlog(20_000, 4.0, 4.4, 3.2),  # 5,000/s, 220 us, 160 us
        Backlog(20_000, 5.0, 4.0, 3.6),  # 4,000/s, 200 us, 180 us
        Backlog(20_000, 3.2, 5.0, 3.0),  # 6,250/s, 250 us, 150 us
    ]
    assert median_figures(rounds) == {
        "images_per_s": 5000.0,  # the first round's
        "cpu_us_per_image": 220.0,  # the first round's
        "process_cpu_us_per_image": 160.0,
    }
    # a round ten times slower (the machine's, not the consumer's doing) does not become the figure
    slowed = [*rounds[:2], Backlog(20_000, 40.0, 50.0, 30.0)]
    assert median_figures(slowed)["images_per_s"] == 4000.0
    assert median_figures(slowed)["cpu_us_per_image"] == 220.0


def _result(peer: list[Backlog], worker: list[Backlog], p99_at_1000: float = 30.0) -> BenchResult:
    fields: dict[str, Any] = {name: 0.0 for name in BenchResult.__dataclass_fields__}
    for name in ("worker_vs_peer_throughput", "worker_vs_peer_cpu"):
        del fields[name]  # computed
    peers, workers = median_figures(peer), median_figures(worker)
    fields.update(
        worker_backlog_images_per_s=workers["images_per_s"],
        worker_cpu_us_per_image=workers["cpu_us_per_image"],
        peer_backlog_images_per_s=peers["images_per_s"],
        peer_cpu_us_per_image=peers["cpu_us_per_image"],
        backlog_runs={"peer": [r.figures() for r in peer], "worker": [r.figures() for r in worker]},
        latency_at_100_per_s={"p50_ms": 6.0, "p99_ms": 9.0},
        latency_at_1000_per_s={"p50_ms": 12.0, "p99_ms": p99_at_1000},
    )
    return BenchResult(**fields)


def test_the_ratios_pair_each_worker_round_with_its_peer_round() -> None:
    # Rounds 1 and 2 say 0.9 x the throughput and 1.2 x the CPU per image; round 3 (the worker's run slowed) says
    # 0.5 and 2.0. Medians of each figure alone, or of the rounds sorted before pairing, would say 0.72 x the
    # throughput: figures of different rounds set against each other.
    peer = [Backlog(20_000, 5.0, 4.0, 3.0), Backlog(20_000, 20 / 6, 4.0, 3.0), Backlog(20_000, 4.0, 4.0, 3.0)]
    worker = [Backlog(18_000, 5.0, 4.32, 3.0), Backlog(18_000, 20 / 6, 4.32, 3.0), Backlog(10_000, 4.0, 4.0, 3.0)]
    result = _result(peer, worker)
    assert [r["images_per_s"] for r in result.backlog_runs["peer"]] == [4000.0, 6000.0, 5000.0]
    assert [r["images_per_s"] for r in result.backlog_runs["worker"]] == [3600.0, 5400.0, 2500.0]
    assert result.worker_vs_peer_throughput == 0.9
    assert result.worker_vs_peer_cpu == 1.2
    assert result.targets_met() == {
        "worker throughput >= 0.8 x peer": True,
        "worker CPU per image <= 1.5 x peer": True,
        "p50 <= 8 ms and p99 <= 20 ms at 100 images/s": True,
        "p99 <= 40 ms at 1,000 images/s": True,
    }


def test_a_target_missed_is_reported_missed() -> None:
    peer = [Backlog(20_000, 4.0, 4.0, 3.0)] * 3
    worker = [Backlog(20_000, 6.0, 7.0, 5.0)] * 3  # 0.67 x the throughput, 1.75 x the CPU
    met = _result(peer, worker, p99_at_1000=41.0).targets_met()
    assert met["worker throughput >= 0.8 x peer"] is False
    assert met["worker CPU per image <= 1.5 x peer"] is False
    assert met["p99 <= 40 ms at 1,000 images/s"] is False
    assert met["p50 <= 8 ms and p99 <= 20 ms at 100 images/s"] is True

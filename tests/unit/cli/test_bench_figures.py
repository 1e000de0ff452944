"""The bench's arithmetic: per-run figures, medians over rounds, the ratios and the targets they are judged by."""

from __future__ import annotations

from cli.bench.run import Backlog, median_figures


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

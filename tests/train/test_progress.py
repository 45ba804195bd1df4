"""Progress lines for logs: a steady interval, step/loss/img/s/ETA, nothing on ``off``."""

import io

from deepres.train.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_steps(progress: Progress, clock: FakeClock, steps: int, seconds_per_step: float) -> None:
    for step in range(1, steps + 1):
        clock.now += seconds_per_step
        progress.update(step, 1, loss=0.5, accuracy=0.75, images_per_s=128.0)


def test_lines_come_at_the_interval_with_step_loss_rate_and_eta():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(100, "lines", stream, every=30.0, clock=clock)
    run_steps(progress, clock, 100, seconds_per_step=1.0)
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["30/100", "60/100", "90/100"]
    assert lines[0].startswith("step 30/100 ep 1 loss 0.500 acc  75.0%")
    assert "128 img/s" in lines[0]
    # 29 steps in 29 s after the first: 1 step/s, so 70 steps left take 70 s
    assert lines[0].endswith("ETA 01:10")


def test_off_prints_nothing_and_auto_off_a_terminal_means_lines():
    quiet, clock = io.StringIO(), FakeClock()
    run_steps(Progress(10, "off", quiet, every=1.0, clock=clock), clock, 10, 5.0)
    Progress(10, "off", quiet).line("a row")
    assert quiet.getvalue() == ""
    assert Progress(10, "auto", io.StringIO()).mode == "lines"


def test_the_bar_redraws_in_place():
    stream, clock = io.StringIO(), FakeClock()
    run_steps(Progress(4, "bar", stream, clock=clock), clock, 4, 1.0)
    assert "\n" not in stream.getvalue() and stream.getvalue().count("\r[") == 4

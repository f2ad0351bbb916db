"""The migration runner's pacing (workers/pacing.py): how long it pauses after a step for
a given load of its server, and the CPU time it reads that load from. (That a real
runner child paces itself while its server answers calls is in test_migration_crash.)"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from registry_server.workers.pacing import BUSY_LOAD, Pacer, process_cpu_seconds


class Fake:
    """A clock and a CPU counter that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.cpu: float | None = 5.0

    def advance(self, seconds: float, load: float) -> None:
        self.now += seconds
        if self.cpu is not None:
            self.cpu += seconds * load


def pacer(fake: Fake, share: float = 0.3) -> Pacer:
    return Pacer(lambda: fake.cpu, busy_share=share, clock=lambda: fake.now)


def test_an_idle_server_costs_the_migration_nothing() -> None:
    fake = Fake()
    p = pacer(fake)
    fake.advance(0.1, load=BUSY_LOAD / 2)
    assert p.pause_after(0.1) == 0.0
    assert p.load == pytest.approx(BUSY_LOAD / 2)


def test_a_busy_server_leaves_the_runner_its_busy_share_of_the_time() -> None:
    fake = Fake()
    p = pacer(fake, share=0.3)
    for load in (0.1, 0.5, 1.9):  # however busy: the same share
        fake.advance(0.15, load=load)
        pause = p.pause_after(0.15)
        assert p.load == pytest.approx(load)
        assert 0.15 / (0.15 + pause) == pytest.approx(0.3)
        p.restart()


def test_the_load_is_measured_since_the_previous_step_and_from_restart() -> None:
    fake = Fake()
    p = pacer(fake)
    fake.advance(60.0, load=1.0)  # busy long ago, between two migrations
    p.restart()
    fake.advance(0.1, load=0.0)
    assert p.pause_after(0.1) == 0.0
    fake.advance(0.1, load=1.0)
    assert p.pause_after(0.1) > 0.0
    fake.advance(0.1, load=0.0)
    assert p.pause_after(0.1) == 0.0


def test_full_share_or_an_unreadable_process_never_pauses() -> None:
    fake = Fake()
    p = pacer(fake, share=1.0)
    fake.advance(0.1, load=2.0)
    assert p.pause_after(0.1) == 0.0
    fake = Fake()
    fake.cpu = None
    p = pacer(fake)
    fake.advance(0.1, load=2.0)
    assert p.pause_after(0.1) == 0.0


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="busy share"):
        Pacer(lambda: 0.0, busy_share=share)


def test_cpu_seconds_of_a_process_count_all_its_threads() -> None:
    before = process_cpu_seconds(os.getpid())
    assert before is not None

    def spin() -> None:
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    spin()
    worker.join()
    after = process_cpu_seconds(os.getpid())
    assert after is not None
    # the thread that ended no longer counts; this one's 50 ms do
    assert after - before >= 0.045


def test_cpu_seconds_of_a_process_that_is_gone_are_unknown() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert process_cpu_seconds(child.pid) is None

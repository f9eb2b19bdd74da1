"""Chaos for a viewers run: tiers stopped with a signal and launched again, on a schedule.

A ``ChaosMonkey`` runs its ``ChaosStep``s in order from its own thread while
the viewers play: at ``at`` seconds it sends the tier ``signum`` (SIGTERM
asks it to stop, SIGKILL does not), waits for it to exit, and ``outage``
seconds after ``at`` launches it again with the same command on the same
ports (``restart_tier``), waiting until it answers. Each event's times, in
seconds from the run's start, go to ``events`` for the report and the plots.

Bounded: every wait has a timeout; when the run ends early, a tier that is
down is launched again at once, so the topology stops whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from loadtest.topology import Tier, Topology, TopologyError
from shared.ops.topology import answers

__all__ = ["ChaosMonkey", "ChaosStep", "chaos_steps", "restart_tier", "stop_tier"]


@dataclasses.dataclass(frozen=True)
class ChaosStep:
    """Stop ``tier`` with ``signum`` at ``at`` seconds; launch it again ``outage`` s later."""

    tier: str
    signum: int
    at: float
    outage: float


def chaos_steps(duration: float, outage: float) -> list[ChaosStep]:
    """The regional stopped politely at a quarter of the run, the origin killed past half."""
    return [
        ChaosStep("regional", signal.SIGTERM, 0.25 * duration, outage),
        ChaosStep("origin", signal.SIGKILL, 0.55 * duration, outage),
    ]


def stop_tier(tier: Tier, signum: int, wait_seconds: float = 10.0) -> int | None:
    """Send ``signum`` to a tier, wait for it to exit (kill it after ``wait_seconds``)."""
    if tier.proc.poll() is None:
        tier.proc.send_signal(signum)
    try:
        tier.proc.wait(wait_seconds)
    except subprocess.TimeoutExpired:
        tier.proc.kill()
        tier.proc.wait(wait_seconds)
    return tier.proc.returncode


def restart_tier(top: Topology, name: str, ready_seconds: float = 30.0) -> None:
    """Launch a stopped tier again: the same command, the same ports, its log appended
    to; wait until its ``/healthz`` answers, or raise ``TopologyError``."""
    old = top.tiers[name]
    if old.proc.poll() is None:
        raise TopologyError(f"{name} is still running")
    argv = [str(a) for a in cast(list[str], old.proc.args)]
    with contextlib.ExitStack() as stack:  # the child keeps its own copy of the descriptor
        out = stack.enter_context(old.log_path.open("ab")) if old.log_path else None
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None
        )
    top.tiers[name] = tier = dataclasses.replace(old, proc=proc)
    deadline = time.monotonic() + ready_seconds
    while not answers(tier.admin_url + "/healthz"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise TopologyError(f"{name} did not come back; log tail:\n{tier.log_tail()}")
        time.sleep(0.05)


class ChaosMonkey:
    """Runs ``steps`` from a thread, in order; each event's times go to ``events``.
    When the run ends early, a tier that is down is launched again at once."""

    def __init__(self, top: Topology, steps: Sequence[ChaosStep], t0: float) -> None:
        self.top, self.steps, self.t0 = top, steps, t0
        # guarded by: written by the chaos thread only; read after __exit__ joined it
        self.events: list[dict[str, Any]] = []
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-monkey", daemon=True)

    def __repr__(self) -> str:
        return f"<ChaosMonkey {len(self.events)}/{len(self.steps)} events>"

    def __enter__(self) -> ChaosMonkey:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def _run(self) -> None:
        try:
            for step in self.steps:
                if self._stop.wait(max(0.0, step.at - self._now())):
                    return
                event: dict[str, Any] = {
                    "tier": step.tier,
                    "signal": signal.Signals(step.signum).name,
                }
                event["stop_at"] = round(self._now(), 3)
                event["exit_code"] = stop_tier(self.top.tiers[step.tier], step.signum)
                event["stopped_at"] = round(self._now(), 3)
                self.events.append(event)
                self._stop.wait(max(0.0, step.at + step.outage - self._now()))
                event["restart_at"] = round(self._now(), 3)
                restart_tier(self.top, step.tier)
                event["ready_at"] = round(self._now(), 3)
        except (TopologyError, OSError, subprocess.SubprocessError) as exc:
            self.error = str(exc)[:2000]

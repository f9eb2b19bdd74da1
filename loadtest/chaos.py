"""Chaos for a viewers run: tiers stopped and launched again, and origin errors, on a schedule.

A ``ChaosMonkey`` runs its steps in order from its own thread while the
viewers play. A ``ChaosStep``: at ``at`` seconds it sends the tier ``signum``
(SIGTERM asks it to stop, SIGKILL does not), waits for it to exit, and
``outage`` seconds after ``at`` launches it again with the same command on the
same ports (``restart_tier``), waiting until it answers. A ``FaultStep``: at
``at`` seconds it sets the origin's faults (``PUT /faults`` on its admin
listener; the origin runs with ``--fault-control``) and clears them
``outage`` seconds later. Each event's times, in seconds from the run's
start, go to ``events`` for the report and the plots.

Bounded: every wait has a timeout; when the run ends early, a tier that is
down is launched again at once, so the topology stops whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import Any, cast

from loadtest.topology import Tier, Topology, TopologyError
from shared.ops.topology import answers

__all__ = [
    "ChaosMonkey",
    "ChaosStep",
    "FaultStep",
    "chaos_steps",
    "restart_tier",
    "set_faults",
    "stop_tier",
]


@dataclasses.dataclass(frozen=True)
class ChaosStep:
    """Stop ``tier`` with ``signum`` at ``at`` seconds; launch it again ``outage`` s later."""

    tier: str
    signum: int
    at: float
    outage: float


@dataclasses.dataclass(frozen=True)
class FaultStep:
    """Set the origin's ``faults`` at ``at`` seconds, named ``name``; clear them
    ``outage`` seconds later."""

    name: str
    faults: dict[str, float]
    at: float
    outage: float
    tier: str = "origin"


def chaos_steps(duration: float, outage: float) -> list[ChaosStep | FaultStep]:
    """The regional stopped politely at a quarter of the run, the origin killed past
    half, then origin errors: every answer 503 for ``outage`` s, then 5 % of bodies
    cut by a reset for ``outage`` s."""
    errors_at = 0.75 * duration
    return [
        ChaosStep("regional", signal.SIGTERM, 0.25 * duration, outage),
        ChaosStep("origin", signal.SIGKILL, 0.55 * duration, outage),
        FaultStep("503", {"status": 503}, errors_at, outage),
        FaultStep("reset 5%", {"reset_rate": 0.05}, errors_at + outage, outage),
    ]


def set_faults(tier: Tier, faults: dict[str, float], timeout: float = 5.0) -> None:
    """``PUT /faults`` on the tier's admin listener (an origin with ``--fault-control``)."""
    req = urllib.request.Request(
        tier.admin_url + "/faults",
        data=json.dumps(faults).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()


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

    def __init__(self, top: Topology, steps: Sequence[ChaosStep | FaultStep], t0: float) -> None:
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
                if isinstance(step, FaultStep):
                    self._fault(step)
                    continue
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

    def _fault(self, step: FaultStep) -> None:
        """One fault window, as an event with the fields a stop-and-restart has."""
        tier = self.top.tiers[step.tier]
        event: dict[str, Any] = {"tier": step.tier, "signal": f"fault {step.name}"}
        event["stop_at"] = event["stopped_at"] = round(self._now(), 3)
        set_faults(tier, step.faults)
        self.events.append(event)
        try:
            self._stop.wait(max(0.0, step.at + step.outage - self._now()))
        finally:
            set_faults(tier, {})
            event["restart_at"] = event["ready_at"] = round(self._now(), 3)

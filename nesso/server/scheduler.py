"""One thread owns the model. Requests wait in a queue and join the running batch between decode steps
(continuous batching over ``nesso.engine.ContinuousBatch``); each request's text comes back through a sink."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nesso.engine import Constraint, ContinuousBatch, Engine, Generation, SamplingParams, _Sequence
from nesso.errors import NessoError

log = logging.getLogger("nesso.server")


@dataclass
class Delta:
    text: str


@dataclass
class Finished:
    generation: Generation


@dataclass
class Failed:
    message: str
    client_error: bool  # the request's own grammar or schema failed (vs a fault of the server)


Event = Delta | Finished | Failed
Sink = Callable[[Event], None]


@dataclass
class Ticket:
    seq: _Sequence
    sink: Sink
    scheduler: Scheduler
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)
    number: int = 0

    def cancel(self) -> None:
        """Stop generating (the client went away); the slot is freed at the next step boundary."""
        if not self.cancelled.is_set():
            self.cancelled.set()
            self.scheduler._wake()


@dataclass
class Stats:
    admitted: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    steps: int = 0
    tokens: int = 0
    peak_batch: int = 0


class Scheduler:
    def __init__(self, engine: Engine, slots: int = 8) -> None:
        self.engine = engine
        self.batch = ContinuousBatch(engine, slots=slots)
        self.stats = Stats()
        self._queue: deque[Ticket] = deque()
        self._running: dict[int, Ticket] = {}  # id(seq) -> ticket
        self._cv = threading.Condition()
        self._stop = False
        self._numbers = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="nesso-scheduler", daemon=True)

    # ---- public -------------------------------------------------------------------------------
    @property
    def slots(self) -> int:
        return self.batch.slots

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, prompt: list[int], params: SamplingParams, constraint: Constraint | None,
               sink: Sink) -> Ticket:
        """Queue a generation; raises NessoError (in the caller's thread) for a prompt that does not fit."""
        seq = self.batch.sequence(prompt, params, constraint)
        ticket = Ticket(seq, sink, self, number=next(self._numbers))
        with self._cv:
            if self._stop:
                raise NessoError("the server is shutting down")
            self._queue.append(ticket)
            self._cv.notify_all()
        return ticket

    def snapshot(self) -> dict[str, int]:
        with self._cv:
            queued = sum(not t.cancelled.is_set() for t in self._queue)
            active = len(self._running)
        s = self.stats
        return {"slots": self.slots, "active": active, "queued": queued, "admitted": s.admitted,
                "finished": s.finished, "cancelled": s.cancelled, "failed": s.failed, "steps": s.steps,
                "tokens": s.tokens, "peak_batch": s.peak_batch, "reused_prompt_tokens": self.batch.reused_tokens}

    # ---- the loop -----------------------------------------------------------------------------------
    def _wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self._queue and not self._running:
                    self._cv.wait()
                if self._stop:
                    break
                admit = []
                free = self.batch.free
                while self._queue and len(admit) < free:
                    t = self._queue.popleft()
                    if t.cancelled.is_set():
                        self.stats.cancelled += 1
                    else:
                        admit.append(t)
            self._drop_cancelled()
            for t in admit:
                self._admit(t)
            if any(not t.seq.finish for t in self._running.values()):
                try:
                    self.batch.step()
                except Exception as e:  # noqa: BLE001 - a failed forward must not take the server down
                    log.exception("decode step failed")
                    self._fail_all(f"generation failed: {type(e).__name__}: {e}")
                    continue
                self.stats.steps += 1
                self.stats.peak_batch = max(self.stats.peak_batch, sum(not t.seq.finish for t in self._running.values()))
            self._publish()
        self._fail_all("the server is shutting down")

    def _admit(self, t: Ticket) -> None:
        try:
            self.batch.add(t.seq)
        except Exception as e:  # noqa: BLE001
            log.exception("prefill failed")
            self.batch.remove(t.seq)
            self._fail_all(f"generation failed: {type(e).__name__}: {e}", also=[t])
            return
        self.stats.admitted += 1
        self._running[id(t.seq)] = t

    def _drop_cancelled(self) -> None:
        for key, t in list(self._running.items()):
            if t.cancelled.is_set():
                self.batch.remove(t.seq)
                del self._running[key]
                self.stats.cancelled += 1

    def _publish(self) -> None:
        for key, t in list(self._running.items()):
            seq = t.seq
            delta = self.batch.take_delta(seq)
            if delta:
                self._emit(t, Delta(delta))
            if not seq.finish:
                continue
            error = self.batch.error(seq)
            result = self.batch.result(seq)
            self.batch.remove(seq)
            del self._running[key]
            self.stats.tokens += result.completion_tokens
            if error:
                self.stats.failed += 1
                self._emit(t, Failed(error, client_error=True))
            else:
                self.stats.finished += 1
                self._emit(t, Finished(result))

    def _fail_all(self, message: str, also: list[Ticket] | None = None) -> None:
        victims = list(self._running.values()) + (also or [])
        self._running.clear()
        self.batch.reset()  # the cache may be half written
        for t in victims:
            self.stats.failed += 1
            self._emit(t, Failed(message, client_error=False))
        if self._stop:
            with self._cv:
                queued, self._queue = list(self._queue), deque()
            for t in queued:
                self._emit(t, Failed(message, client_error=False))

    @staticmethod
    def _emit(t: Ticket, event: Event) -> None:
        try:
            t.sink(event)
        except Exception:  # noqa: BLE001 - a consumer that went away must not stop the loop
            log.debug("dropping an event for a closed consumer", exc_info=True)

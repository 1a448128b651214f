"""The sequence scheduler: Triton's sequence batching for one model version.

Each request names its sequence (a correlation id, integer or string) and says whether it
starts or ends it. The requests of one sequence run one after another in the order they
arrived (a lock per sequence, fair), each fed its control tensors and the state its sequence's
previous request left; requests of different sequences batch together in the dynamic batcher.

A sequence lives from a request that starts it until one that ends it, until one of its
requests fails (it timed out, was cancelled or refused: the model never saw it, so what
follows would run on a state that misses it; Triton ends such a sequence too), or until it has
been idle (no request queued or running) for the config's max_sequence_idle_microseconds. A
model holds a bounded number of live sequences, and each sequence a bounded number of waiting
requests: past either, RESOURCE_EXHAUSTED, so abandoned sequences or a flood on one id cannot
grow memory without end. A START for a live sequence starts it afresh (Triton's rule for a
sequence that never ended).
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from .errors import HanzoError, InvalidArgument, ResourceExhausted, quote
from .sequence_config import SequenceSpec

Execute = Callable[[dict[str, np.ndarray]], Awaitable[dict[str, np.ndarray]]]
INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class SequenceFlags:
    """A request's place in its sequence, from its parameters."""

    corrid: int | str
    start: bool = False
    end: bool = False


@dataclass
class _Sequence:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    pending: int = 0  # requests queued on or holding the lock
    last_used: float = 0.0


class Sequencer:
    def __init__(self, spec: SequenceSpec, max_pending: int) -> None:
        """`max_pending`: requests one sequence may have queued or running (the batcher's queue
        bound: a sequence's requests wait on its lock before they reach that queue)."""
        self.spec = spec
        self.max_pending = max_pending
        self._live: OrderedDict[int | str, _Sequence] = OrderedDict()  # oldest use first

    @property
    def live(self) -> int:
        return len(self._live)

    async def run(self, flags: SequenceFlags | None, tensors: dict[str, np.ndarray], rows: int,
                  execute: Execute) -> dict[str, np.ndarray]:
        """One request of a sequence: queued behind its sequence's earlier requests, fed its
        controls and state, its state outputs kept for the next request and taken out of what
        the client gets."""
        spec = self.spec
        if flags is None or flags.corrid in (0, ""):
            raise InvalidArgument('parameters["sequence_id"]', f"inference request to model {quote(spec.model)} must "
                                                               f"specify a non-zero or non-empty correlation ID")
        self._check_corrid(flags.corrid)
        if rows != 1:
            raise InvalidArgument(f'input "{next(iter(tensors))}"', f"inference request to model {quote(spec.model)} "
                                  f"must specify batch-size 1 due to requirements of sequence batcher")
        sequence = self._enter(flags, time.monotonic())
        if sequence.pending >= self.max_pending:
            raise ResourceExhausted(f"sequence {flags.corrid} of model {quote(spec.model)} has {sequence.pending} "
                                    f"requests waiting, its limit: send the next when one is answered")
        sequence.pending += 1
        try:
            async with sequence.lock:
                if flags.start:  # a sequence's first request, or a fresh start of a live one
                    sequence.state = {s.input_name: s.initial for s in spec.states}
                feeds = dict(tensors)
                feeds.update(spec.controls_for(flags.start, flags.end, flags.corrid))
                feeds.update(sequence.state)
                outputs = await execute(feeds)
                sequence.state = self._next_state(outputs)
        except BaseException:
            self._end(flags.corrid, sequence)
            raise
        finally:
            sequence.pending -= 1
            sequence.last_used = time.monotonic()
            if self._live.get(flags.corrid) is sequence:
                self._live.move_to_end(flags.corrid)
        hidden = spec.state_outputs
        return {name: value for name, value in outputs.items() if name not in hidden}

    def _enter(self, flags: SequenceFlags, now: float) -> _Sequence:
        """The live sequence this request joins, started where it asks; an END takes it out of
        the table at once, so a later request of the same id must start a new one."""
        live = self._live
        sequence = live.get(flags.corrid)
        if sequence is not None and sequence.pending == 0 and now - sequence.last_used > self.spec.idle_s:
            del live[flags.corrid]  # idled out: gone, as the reaper would have had it
            sequence = None
            if not flags.start:
                raise InvalidArgument('parameters["sequence_start"]', f"sequence {flags.corrid} to model "
                                      f"{quote(self.spec.model)} was released after {self.spec.idle_s:g} s idle "
                                      f"(max_sequence_idle_microseconds); start it again with the START flag")
        self._reap(now)
        if sequence is None:
            if not flags.start:
                raise InvalidArgument('parameters["sequence_start"]', f"inference request for sequence {flags.corrid} "
                                      f"to model {quote(self.spec.model)} must specify the START flag on the first "
                                      f"request of the sequence")
            if len(live) >= self.spec.max_sequences:
                raise ResourceExhausted(f"model {quote(self.spec.model)} holds {len(live)} live sequences, its limit: "
                                        f"end sequences with sequence_end, or let them idle out")
            sequence = _Sequence(last_used=now)
            live[flags.corrid] = sequence
        else:
            live.move_to_end(flags.corrid)
            sequence.last_used = now
        if flags.end:
            del live[flags.corrid]
        return sequence

    def _end(self, corrid: int | str, sequence: _Sequence) -> None:
        """A failed request ends its sequence (a START of the same id begins a new one)."""
        if self._live.get(corrid) is sequence:
            del self._live[corrid]

    def _reap(self, now: float) -> None:
        """Release sequences idle past the limit, least recently used first, stopping at the
        first that is not idle (each request pays for a few); at the bound on live sequences,
        every one is looked at, busy ones skipped."""
        live, idle_s = self._live, self.spec.idle_s
        if len(live) >= self.spec.max_sequences:
            for corrid in [c for c, s in live.items() if not s.pending and now - s.last_used > idle_s]:
                del live[corrid]
            return
        while live:
            corrid, sequence = next(iter(live.items()))
            if sequence.pending or now - sequence.last_used <= idle_s:
                return
            del live[corrid]

    def _check_corrid(self, corrid: int | str) -> None:
        for control in self.spec.controls:
            if control.kind != "corrid":
                continue
            if control.datatype.kserve == "BYTES" and not isinstance(corrid, str):
                raise InvalidArgument('parameters["sequence_id"]', f"model {quote(self.spec.model)} takes string "
                                                                   f"correlation IDs ({control.name} is TYPE_STRING)")
            if control.datatype.kserve != "BYTES":
                if not isinstance(corrid, int):
                    raise InvalidArgument('parameters["sequence_id"]', f"model {quote(self.spec.model)} takes integer "
                                          f"correlation IDs ({control.name} is {control.datatype.config})")
                top = np.iinfo(control.datatype.numpy).max
                if not 0 < corrid <= top:
                    raise InvalidArgument('parameters["sequence_id"]', f"{corrid} does not fit {control.name}'s "
                                                                       f"{control.datatype.config}")

    def _next_state(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        state = {}
        for s in self.spec.states:
            value = outputs.get(s.output_name)
            if value is None or value.shape != s.initial.shape:
                got = "nothing" if value is None else f"shape {list(value.shape)}"
                raise HanzoError(f"model {quote(self.spec.model)}: state output {s.output_name!r} gave {got}, not the "
                                 f"state's shape {list(s.initial.shape)}")
            state[s.input_name] = value
        return state

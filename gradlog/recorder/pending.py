"""What logged steps measured, kept on the device until the writer flushes.

On a GPU, reading a value on the host (``.item()``, ``.tolist()``, ``float(tensor)``, a copy
to the CPU) makes the host wait until the device has finished everything queued so far. A
logged step therefore only queues its measurements and keeps them as tensors: each event is a
:class:`PendingRecord`, its header (run, epoch, step, time) taken at the step, its values still
on the device. The writer resolves pending records when it flushes (docs/recorder.md, "What is
transferred when"): the first one resolved fetches the values of every record waiting, in one
transfer per device, and each then builds its record from plain floats with the arithmetic the
recorder has always used on the host, so the log is byte-for-byte what it would be had every
value been fetched at its own step.

A record is built once, when it is first resolved, and handed then to the recorder's
listeners (the ``mirror=`` of :mod:`gradlog.recorder.mirror`, a callback's trainer loggers):
they receive each event's values when the writer fetches them, never earlier, so that a mirror
adds no transfer to a step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from gradlog.format import Record
from gradlog.recorder.gram import DeviceGram
from gradlog.recorder.norms import norms_and_cosines
from gradlog.recorder.records import balance_fields, stats_fields


class PendingRecord:
    """A record whose values are still tensors; :meth:`resolve` gives the record."""

    __slots__ = ("_source", "_tensors", "_build", "_values", "_record", "step")

    def __init__(
        self,
        source: DeviceValues,
        tensors: list[torch.Tensor],
        build: Callable[[list[float]], Record],
        step: int | None = None,
    ) -> None:
        self._source = source
        self.step = step  # where listeners file the event (pending_event's ``at_step``)
        self._tensors: list[torch.Tensor] | None = tensors
        self._build: Callable[[list[float]], Record] | None = build
        self._values: list[float] | None = None
        self._record: Record | None = None

    def resolve(self) -> Record:
        """The record, its values fetched with those of every record waiting (once)."""
        if self._record is None:
            if self._values is None:
                self._source.fetch()
            self._record = self._build(self._values)
            self._build = self._values = None
            self._source.built(self._record, self.step)
        return self._record


class DeviceValues:
    """The records of one recorder whose values have not been fetched yet."""

    def __init__(self) -> None:
        self._waiting: list[PendingRecord] = []
        self._unbuilt: list[PendingRecord] = []  # fetched, not yet resolved: for resolve_all
        self.listeners: list[Callable[[Record, int | None], None]] = []

    def built(self, record: Record, step: int | None) -> None:
        """A record was just built from its values: every listener gets it, once."""
        for listener in self.listeners:
            listener(record, step)

    def resolve_all(self) -> None:
        """Build every record waiting now (one transfer per device), in the order they were
        made, so that the listeners have them before the writer writes them out."""
        self.fetch()
        unbuilt, self._unbuilt = self._unbuilt, []
        for entry in unbuilt:
            entry.resolve()

    def defer(
        self,
        tensors: list[torch.Tensor],
        build: Callable[[list[float]], Record],
        step: int | None = None,
    ) -> PendingRecord:
        """A record to be built by ``build`` from the values of ``tensors`` (flattened, in
        order) when it is resolved; ``step``: where listeners file it.

        The tensors are copied, now, into one flat tensor on their device (one per device
        where they are spread over several): the copy is a single operation here, where the
        tensors one by one would cost a flush more, and it leaves the caller free to reuse
        them (a loss, a gradient).
        """
        with torch.no_grad():
            if len({t.device for t in tensors}) == 1:
                tensors = [_flatten(tensors)]
            else:  # model parallel: each tensor copied on its own device
                tensors = [_flatten([t]) for t in tensors]
        entry = PendingRecord(self, tensors, build, step)
        self._waiting.append(entry)
        return entry

    def fetch(self) -> None:
        """Every waiting record's values, in one transfer per device."""
        waiting, self._waiting = self._waiting, []
        if self.listeners:  # only resolve_all needs them, and only when someone listens
            self._unbuilt = [e for e in self._unbuilt if e._record is None] + waiting
        groups: dict[torch.device, list[torch.Tensor]] = {}
        for entry in waiting:
            for tensor in entry._tensors:
                groups.setdefault(tensor.device, []).append(tensor)
        fetched = {device: _to_host(group) for device, group in groups.items()}
        read = dict.fromkeys(fetched, 0)
        for entry in waiting:
            values: list[float] = []
            for tensor in entry._tensors:
                start = read[tensor.device]
                end = read[tensor.device] = start + tensor.numel()
                values += fetched[tensor.device][start:end]
            entry._values, entry._tensors = values, None


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """A new 1-d tensor of the values of ``tensors`` (on one device), in order: each run of
    scalars stacked and the runs put together, so as few operations as there are runs. Integer
    or boolean ones (never a norm, hardly a loss) become float64 first, so that no promotion
    rounds them; floats promote exactly."""
    pieces: list[torch.Tensor] = []
    run: list[torch.Tensor] = []
    for tensor in tensors:
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.float64)
        if tensor.dim() == 0:
            run.append(tensor)
            continue
        if run:
            pieces.append(torch.stack(run))
            run = []
        pieces.append(tensor.reshape(-1))
    if run:
        pieces.append(torch.stack(run))
    if len(pieces) > 1:
        return torch.cat(pieces)
    return pieces[0] if run else pieces[0].clone()  # a stack is new; the caller's is copied


def _to_host(tensors: list[torch.Tensor]) -> list[float]:
    """The values of 1-d tensors on one device, as Python floats: one copy into float64 (exact
    for every float type) and one transfer."""
    out = torch.empty(
        sum(t.numel() for t in tensors), dtype=torch.float64, device=tensors[0].device
    )
    with torch.no_grad():
        torch.cat(tensors, out=out)
    return out.tolist()


def pending_event(
    source: DeviceValues,
    header: Record,
    *,
    stats: tuple[list[int], list[torch.Tensor]] | None,
    clip: list[torch.Tensor] | None = None,
    names: Sequence[str] | None,
    balance: tuple[DeviceGram, list[torch.Tensor]] | None,
    tasks: Sequence[str],
    weights: dict[str, float],
    at_step: int | None = None,
) -> PendingRecord:
    """An event whose measurements are still on the device.

    ``stats``: the indices of the parameters with a gradient and their norms (tensors whose
    values are in index order), or None; ``clip``: with ``stats``, the step's pre-clip norm and
    clip factor (two scalars), or None; ``names``: every parameter's name, to list each norm
    (``layers=True``), or None. ``balance``: the task gradients' Gram matrix and the task losses
    (tensors holding one value per task, in task order, as :func:`task_losses` gives them), or
    None. ``at_step``: the step listeners file the event at, when its header has none (a
    sample taken apart from a step: the recorder's last step).
    """
    tensors: list[torch.Tensor] = []
    n_norms = n_gram = n_clip = 0
    if stats is not None:
        index, norms = stats
        tensors += norms
        n_norms = len(index)
        if clip is not None:
            tensors += clip
            n_clip = len(clip)
    if balance is not None:
        gram, losses = balance
        tensors += gram.tensors
        tensors += losses
        n_gram = sum(t.numel() for t in gram.tensors)

    def build(values: list[float]) -> Record:
        record = header
        if stats is not None:
            clipping = values[n_norms : n_norms + n_clip] if n_clip else None
            record.update(stats_fields(index, values[:n_norms], names, clipping))
        if balance is not None:
            start = n_norms + n_clip
            matrix = gram.matrix(values[start : start + n_gram])
            norms, cosines = norms_and_cosines(matrix)
            task_losses = values[start + n_gram :]
            record.update(balance_fields(tasks, weights, task_losses, norms, cosines))
        return record

    step = header.get("step")
    return source.defer(tensors, build, at_step if step is None else step)


def task_losses(losses: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The losses, for :func:`pending_event` (which copies them), each checked to hold one
    value as ``float(loss)`` requires: on its shape, which needs no transfer."""
    for loss in losses:
        if loss.numel() != 1:
            raise ValueError(
                f"a task loss must be a single value (a scalar tensor), got shape {tuple(loss.shape)}"
            )
    return [loss if loss.dim() == 0 else loss.reshape(()) for loss in losses]

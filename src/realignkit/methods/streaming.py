"""Stream plan rows through worker threads into the writer, whole or in row blocks, in plan order."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from realignkit.checkpoints import StreamingModelWriter
from realignkit.methods.context import TensorPlan

RowRange = tuple[int, int]


@dataclass(frozen=True)
class WorkItem:
    row: TensorPlan
    rows: RowRange | None  # a row block of a big tensor for an elementwise method, or None for all of it

    @property
    def last_block(self) -> bool:
        return self.rows is None or self.rows[1] == self.row.shape[0]


def row_blocks(row: TensorPlan, block_elements: int) -> list[RowRange]:
    """Consecutive dim-0 ranges of about block_elements entries each (at least one row)."""
    per_row = max(1, math.prod(row.shape[1:]))
    step = max(1, block_elements // per_row)
    return [(start, min(start + step, row.shape[0])) for start in range(0, row.shape[0], step)]


def work_items(
    plan: list[TensorPlan], elementwise: bool | Callable[[TensorPlan], bool], block_elements: int
) -> list[WorkItem]:
    """Split big tensors into row blocks when the method is elementwise (for that tensor's parameters, when
    `elementwise` is a callable); everything else stays whole."""
    items = []
    for row in plan:
        whole = row.passthrough or len(row.shape) == 0 or math.prod(row.shape) <= block_elements
        if whole or not (elementwise(row) if callable(elementwise) else elementwise):
            items.append(WorkItem(row, None))
        else:
            items.extend(WorkItem(row, rows) for rows in row_blocks(row, block_elements))
    return items


Compute = Callable[[WorkItem, "Future[Any] | None"], torch.Tensor]
StatsJob = Callable[[TensorPlan], Any]


def stream(
    items: list[WorkItem],
    compute: Compute,
    writer: StreamingModelWriter,
    *,
    threads: int,
    show_progress: bool,
    stats_job: StatsJob | None = None,
) -> None:
    """Compute items on worker threads (reads and torch ops release the GIL) and write them in order.

    With `stats_job`, a blocked tensor first gets one job computing its per-tensor statistics; the block jobs
    of that tensor wait for its future (jobs start in submission order, so this cannot deadlock).
    """
    workers = max(1, threads)
    window = workers + 1  # bounded look-ahead keeps memory at a few tensors (or row blocks)
    pending: collections.deque[tuple[WorkItem, Future[torch.Tensor]]] = collections.deque()
    # Parallelism comes from our workers; torch's intra-op threads on top of them oversubscribe the cores and
    # their spin-waiting burnt several times the useful CPU time in measurements.
    intra_op_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="realignkit-repair")
    bar = tqdm(total=sum(i.last_block for i in items), desc="repair", unit="tensor",
               disable=None if show_progress else True, leave=False)
    stats: Future[Any] | None = None
    try:
        for item in items:
            if item.rows is None:
                stats = None
            elif stats_job is not None and item.rows[0] == 0:
                stats = pool.submit(stats_job, item.row)
            pending.append((item, pool.submit(compute, item, stats)))
            if len(pending) >= window:
                _write_next(pending, writer, bar)
        while pending:
            _write_next(pending, writer, bar)
    except BaseException:
        writer.abort()  # the atomic output dir removes the partial files
        raise
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(intra_op_threads)
        bar.close()


def _write_next(pending: collections.deque, writer: StreamingModelWriter, bar: Any) -> None:
    item, future = pending.popleft()
    writer.write(item.row.out_name, future.result())
    if item.last_block:
        bar.update(1)


def block_iterator(load: Callable[[TensorPlan, RowRange], Any], row: TensorPlan, block_elements: int):
    """A callable giving a fresh iterator over the row's blocks (stats may need several passes)."""

    def blocks() -> Iterator[Any]:
        for rows in row_blocks(row, block_elements):
            yield load(row, rows)

    return blocks

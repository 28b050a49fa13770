"""Two drivers of the same shard code: ``run_local`` (one process, fragment after fragment) and
``run_ray`` (Ray Data ``map_batches`` over fragments with an actor pool that loads both models once
per worker). Both merge fragment states in fragment order, so the result does not depend on how
many workers there are.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import pickle
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import fail, first_line
from ..exceptions import InvalidInputError
from ..tickets.huggingface import rebuilt
from .shard import AuditPlan, AuditState, ShardAuditor
from .sources import FileSource, Fragment

RAY_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class WorkItem:
    """A fragment, the id of its first kept row, and how many of its kept rows to audit."""

    fragment: Fragment
    first_row: int
    limit: int


def plan_work(fragments: tuple[Fragment, ...], kept_rows: list[int], *, max_rows: int | None) -> list[WorkItem]:
    """Global row ids in fragment order; ``max_rows`` keeps the first rows of the table."""
    items, first = [], 0
    for fragment, rows in zip(fragments, kept_rows):
        limit = rows if max_rows is None else max(0, min(rows, max_rows - first))
        if limit:
            items.append(WorkItem(fragment, first, limit))
        first += limit
    return items


def merge_in_order(states: Iterator[AuditState]) -> AuditState | None:
    merged = None
    for state in states:
        merged = state if merged is None else merged.merge(state)
    return merged


def run_local(plan: AuditPlan, source: FileSource, items: list[WorkItem], *, split: str | None,
              progress: Callable[[int], None] | None = None) -> AuditState | None:
    """Audit every fragment in this process, one at a time (memory: one fragment)."""
    auditor = ShardAuditor(plan)

    def states() -> Iterator[AuditState]:
        for item in items:
            state = auditor.audit_fragment(source, item.fragment, first_row=item.first_row, limit=item.limit,
                                           split=split)
            if progress is not None:
                progress(2 * item.limit)  # rows through both models
            yield state

    return merge_in_order(states())


class _FragmentWorker:
    """A Ray Data actor: both models loaded once, then one fragment per call."""

    def __init__(self, plan: AuditPlan, source: FileSource, items: list[WorkItem], split: str | None) -> None:
        import torch

        torch.set_num_threads(1)  # one core per worker; speed settings never change an answer
        self.plan, self.source, self.items, self.split = plan, source, items, split
        self._auditor: ShardAuditor | None = None

    def auditor(self) -> ShardAuditor:
        """Both models on this worker's device, built on the first fragment: a bad ``--device`` then comes back
        as one message (raised in the constructor, Ray would report a dead actor, or restart it into the error)."""
        if self._auditor is None:
            try:
                plan = dataclasses.replace(self.plan, dense=rebuilt(self.plan.dense), ticket=rebuilt(self.plan.ticket))
                self._auditor = ShardAuditor(plan)
            except InvalidInputError as error:
                hint = " Ray gives a worker a GPU only with --gpus-per-worker (e.g. 1)." if self.plan.device == "cuda" else ""
                raise InvalidInputError(f"on a Ray worker: {error}{hint}") from None
        return self._auditor

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        states, errors = [], []
        for index in batch["item"]:
            item = self.items[int(index)]
            try:
                state = self.auditor().audit_fragment(self.source, item.fragment, first_row=item.first_row,
                                                      limit=item.limit, split=self.split)
                states.append(pickle.dumps(state))
                errors.append("")
            except InvalidInputError as error:
                states.append(b"")
                errors.append(str(error))
            except Exception as error:  # a worker failure must name its file, not kill the job silently
                states.append(b"")
                errors.append(f"reading '{item.fragment.path}' failed on a worker ({type(error).__name__}: "
                              f"{first_line(error)}).")
        return {"item": batch["item"], "state": np.array(states, dtype=object), "error": np.array(errors, dtype=object)}


def _check_address(address: str) -> None:
    """Fail fast, with a clear message, when a Ray cluster address cannot be reached."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
            return
    except (OSError, ValueError):
        fail(f"cannot reach the Ray cluster at --ray-address {address!r}. Check the host and port (the head node's "
             "GCS address, e.g. 10.0.0.5:6379, or ray://host:10001), or leave --ray-address out to start Ray here.")


_STARTED_HERE = [False]
"""Whether the Ray this process is connected to is a local one that ticketaudit started."""


def start_ray(*, address: str | None, num_workers: int) -> Any:
    """Import and connect Ray: the user's cluster at ``address``, or a local Ray with ``num_workers`` CPUs."""
    try:
        import ray
        import ray.data
    except ImportError:
        fail("--engine ray needs Ray, which is not installed. Install it with: pip install 'ticketaudit[ray]' "
             "(or leave --engine ray out to audit in this process).")
    # After ray.data's import (which configures its logger), before ray.init: every Ray failure reaches the
    # user as one ticketaudit message, so Ray's own log lines (warnings, tracebacks) stay off stderr.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if address is not None:
        _check_address(address)
    if ray.is_initialized():  # an earlier audit's, or the user's own ray.init() (e.g. in a notebook): use it
        return ray
    try:
        ray.init(address=address, num_cpus=None if address else num_workers, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR", configure_logging=False)
    except (ConnectionError, RuntimeError, TimeoutError) as error:
        fail(f"could not start or join Ray ({first_line(error)}). Check --ray-address, or leave it "
             "out to start Ray on this machine.")
    _STARTED_HERE[0] = address is None
    return ray


def _no_restarts(dataset: Any) -> dict[str, Any]:
    """``map_batches`` options for actors that are not restarted (Ray < 2.64 takes them as extra keywords)."""
    parameters = inspect.signature(dataset.map_batches).parameters.values()
    accepts = any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)
    return {"max_restarts": 0} if accepts else {}


def run_ray(plan: AuditPlan, source: FileSource, items: list[WorkItem], *, split: str | None, address: str | None,
            num_workers: int, gpus_per_worker: float,
            progress: Callable[[int], None] | None = None) -> AuditState | None:
    """Audit fragments on Ray workers; states come back in fragment order and merge on the driver."""
    with warnings.catch_warnings():  # Ray's own deprecation notices about its internals are not the user's
        ray = start_ray(address=address, num_workers=num_workers)  # Ray's import adds filters: ours go first
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.")
        return _run_ray(ray, plan, source, items, split=split, num_workers=num_workers,
                        gpus_per_worker=gpus_per_worker, progress=progress)


def _run_ray(ray: Any, plan: AuditPlan, source: FileSource, items: list[WorkItem], *, split: str | None,
             num_workers: int, gpus_per_worker: float, progress: Callable[[int], None] | None) -> AuditState | None:
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    cpus = ray.cluster_resources().get("CPU", num_workers)
    dataset = ray.data.from_items([{"item": i} for i in range(len(items))], override_num_blocks=max(1, len(items)))
    results = dataset.map_batches(
        _FragmentWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=max(1, min(num_workers, len(items)))),
        fn_constructor_kwargs={"plan": plan, "source": source, "items": items, "split": split},
        num_cpus=min(1.0, cpus / num_workers), num_gpus=gpus_per_worker or None,
        # On the Ray started here a crashed worker (out of memory, almost always) fails the audit at once with
        # the message below, instead of restarting into the same crash (Ray then also logs a spurious
        # restart warning, ray-project/ray#57733). On the user's cluster Ray's restarts stay: a lost node is retried.
        **_no_restarts(dataset) if _STARTED_HERE[0] else {})

    def states() -> Iterator[AuditState]:
        for row in results.iter_rows():
            if row["error"]:
                fail(str(row["error"]))
            item = items[int(row["item"])]
            if progress is not None:
                progress(2 * item.limit)  # rows through both models
            yield pickle.loads(row["state"])  # our own object, made by our worker in this job

    try:
        return merge_in_order(states())
    except InvalidInputError:
        raise
    except Exception as error:  # Ray wraps worker crashes (out of memory, lost node) in its own types
        fail(f"a Ray worker failed ({type(error).__name__}: {first_line(error)}). "
             "Check the workers' logs (ray logs), their memory, and that every worker can read the data files.")

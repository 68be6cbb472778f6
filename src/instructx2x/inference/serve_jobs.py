"""The edit queue of ``instructx2x serve``: one worker thread runs edits one at a time, in submission
order; a bounded number wait (then 503); finished jobs keep their result for the download."""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from instructx2x.core.errors import InputError

log = logging.getLogger(__name__)


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    id: str
    kind: str
    fn: object = field(repr=False)
    status: str = "queued"  # queued | running | done | failed
    done: int = 0
    total: int = 0
    result: dict | None = field(default=None, repr=False)
    archive: dict | None = field(default=None, repr=False)  # name -> bytes for the download
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    started_at: float | None = None  # time.monotonic() when the worker took it
    ended_at: float | None = None  # time.monotonic() when it finished

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)


class JobQueue:
    """Edits run one at a time in submission order; finished jobs are kept (the last ``keep``)."""

    def __init__(self, max_pending: int = 8, keep: int = 16):
        self.max_pending, self.keep = int(max_pending), int(keep)
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.pending: queue.Queue[Job] = queue.Queue()
        self.lock = threading.Lock()
        self.worker = threading.Thread(target=self._work, name="instructx2x-edit-worker", daemon=True)
        self.worker.start()

    def submit(self, kind: str, fn, total: int = 0) -> Job:
        with self.lock:
            waiting = sum(j.status == "queued" for j in self.jobs.values())
            if waiting >= self.max_pending:
                raise HTTPError(503, f"{waiting} edits are waiting already; try again when one has finished")
            job = Job(id=secrets.token_hex(8), kind=kind, fn=fn, total=total)
            self.jobs[job.id] = job
            finished = [k for k, j in self.jobs.items() if j.finished.is_set()]
            for k in finished[: max(0, len(finished) - self.keep)]:
                del self.jobs[k]
        self.pending.put(job)
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPError(404, f"no job {job_id!r} (finished jobs are kept for the last {self.keep} edits)")
        return job

    def position(self, job: Job) -> int:
        """How many jobs run or wait before this one (0: it is running or done)."""
        if job.status != "queued":
            return 0
        ahead = 0
        for j in list(self.jobs.values()):
            if j is job:
                break
            ahead += j.status in ("queued", "running")
        return ahead

    def _work(self) -> None:
        while True:
            job = self.pending.get()
            job.started_at = time.monotonic()
            job.status = "running"
            try:
                job.result, job.archive = job.fn(job.progress)
                job.status = "done"
            except InputError as err:
                job.error, job.status = str(err), "failed"
            except Exception as err:  # noqa: BLE001 - a bug: logged with its traceback, reported in one line
                log.exception("edit %s failed", job.id)
                job.error, job.status = f"internal error ({type(err).__name__}: {err})", "failed"
            finally:
                job.ended_at = time.monotonic()
                job.finished.set()



"""The request queue and the worker thread: requests that wait together are generated together.

    handlers ──submit(Job)──► queue ──► worker thread: take the oldest job, wait up to `batch_wait_s` for more jobs
                                        with the same GenerationConfig (at most `max_batch_size`), then
                                        Pipeline.answer_batch(requests, generation, clips, streamer)
                                                 │ per-row tokens (RowStreamer) and the answers
                                                 ▼
                                        each job's `emit`: ("text", delta) | ("done", Answer) | ("error", exc)

A job's media is decoded (a MediaClip) before it is queued, so an undecodable file never reaches a batch. If a
batched generation still fails, each of its jobs is retried alone: only the bad one gets the error. Jobs whose
client is gone (`cancelled`) are skipped, and a generation whose every job is cancelled is stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from videosalmonn.config import GenerationConfig
from videosalmonn.errors import VideoSalmonnError
from videosalmonn.llm.language_model import GenerationAborted
from videosalmonn.pipeline import Pipeline, Request
from videosalmonn.streaming import RowStreamer, TextDeltas
from videosalmonn.types import MediaClip

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One request waiting for (or in) a generation. `emit` must be callable from the worker thread."""

    request: Request
    clip: MediaClip
    generation: GenerationConfig
    emit: Callable[[tuple[str, object]], None]
    deltas: TextDeltas
    stream: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class BatchStats:
    batches: int = 0
    answered: int = 0
    failed: int = 0
    aborted: int = 0  # generations stopped because every client of the batch had left or timed out
    largest_batch: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many batches had it


class Batcher:
    """Owns the worker thread. `max_batch_size=1` turns batching off (one request per generation)."""

    def __init__(self, pipeline: Pipeline, max_batch_size: int = 8, batch_wait_s: float = 0.01):
        self.pipeline = pipeline
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.stats = BatchStats()
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="videosalmonn-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in left:
            job.emit(("error", RuntimeError("the server is shutting down")))
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the server is shutting down")
            self._queue.append(job)
            self._cond.notify()

    # ------------------------------------------------------------------------------------ worker thread

    def _loop(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            try:
                self._run(jobs)
            except Exception as e:  # never let the worker die
                log.exception("batch failed outside the model")
                for job in jobs:
                    job.emit(("error", e))

    def _take(self) -> list[Job] | None:
        """The oldest live job and the compatible jobs that arrive within the batching window."""
        with self._cond:
            while True:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return None
                first = self._queue.popleft()
                if not first.cancelled.is_set():
                    break
            batch = [first]
            closes = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch_size:
                for job in [j for j in self._queue if j.generation == first.generation]:
                    if len(batch) == self.max_batch_size:
                        break
                    self._queue.remove(job)
                    if not job.cancelled.is_set():
                        batch.append(job)
                left = closes - time.monotonic()
                if len(batch) == self.max_batch_size or left <= 0 or self._stopping:
                    break
                self._cond.wait(left)
            return batch

    def _run(self, jobs: list[Job]) -> None:
        jobs = [j for j in jobs if not j.cancelled.is_set()]
        if not jobs:
            return
        gen = jobs[0].generation

        def abandoned() -> bool:
            return all(j.cancelled.is_set() for j in jobs)

        streamer = None
        if gen.num_beams == 1:  # HF generate streams greedy/sampling only
            for job in jobs:
                job.deltas.restart()
            streamer = RowStreamer([j.deltas for j in jobs], lambda row, text: _text(jobs[row], text))
        try:
            answers = self.pipeline.answer_batch(
                [j.request for j in jobs], gen, clips=[j.clip for j in jobs], streamer=streamer, should_stop=abandoned
            )
        except GenerationAborted:  # every client of the batch left or timed out (`abandoned`): stop now
            log.info("a generation of %d request(s) was stopped: every client left or timed out", len(jobs))
            self.stats.aborted += 1
            return
        except Exception as e:
            if len(jobs) > 1:
                log.warning(
                    "a batch of %d failed (%s: %s); retrying its requests one by one", len(jobs), type(e).__name__, e
                )
                for job in jobs:
                    self._run([job])
                return
            if not isinstance(e, VideoSalmonnError):
                log.exception("generation failed")
            self.stats.failed += 1
            jobs[0].emit(("error", e))
            return
        self._count(len(jobs))
        for job, answer in zip(jobs, answers):
            job.emit(("done", answer))

    def _count(self, size: int) -> None:
        s = self.stats
        s.batches += 1
        s.answered += size
        s.largest_batch = max(s.largest_batch, size)
        s.sizes[size] = s.sizes.get(size, 0) + 1


def _text(job: Job, text: str) -> None:
    if job.stream:
        job.emit(("text", text))

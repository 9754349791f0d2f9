"""Rotation, threads and worker processes: every line written once, whole, by one writer."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dpagent.telemetry import (
    LogContext,
    LogQueue,
    configure_worker_logging,
    get_agent_logger,
    get_main_logger,
    log_queue,
    logs,
)
from dpagent.telemetry.config import resolve
from dpagent.telemetry.log_handlers import RotatingFile, ToParentHandler, new_queue

TEXT_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z INFO     dpagent\.main: line (\d+)-(\d+) \| .*$"
)


def setup_logging(log_dir: Path, **overrides: Any) -> None:
    logs.configure_logging(resolve({"log_dir": str(log_dir), **overrides}, environ={}))


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "logs"
    logs.shutdown_logging()


def generations(log_dir: Path, name: str) -> list[Path]:
    """``name`` and its backups, oldest first."""
    backups = sorted(
        log_dir.glob(f"{name}.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]), reverse=True
    )
    return [*backups, log_dir / name]


def json_records(log_dir: Path, name: str = "main_structured.jsonl") -> list[dict[str, Any]]:
    records = []
    for path in generations(log_dir, name):
        for line in path.read_text(encoding="utf-8").splitlines():
            records.append(json.loads(line))  # a torn line fails here
    return records


# --- rotation ------------------------------------------------------------------------------------


def test_rotation_at_the_configured_size_keeps_the_configured_backups(log_dir: Path) -> None:
    max_bytes, backups = 4096, 3
    setup_logging(log_dir, log_max_bytes=max_bytes, log_backups=backups)
    log = get_main_logger()
    for n in range(600):
        log.info("line %05d %s", n, "x" * 40)
    for name in ("main.log", "main_structured.jsonl"):
        files = generations(log_dir, name)
        assert [p.name for p in files[:-1]] == [f"{name}.{i}" for i in range(backups, 0, -1)]
        longest = max(len(line) + 1 for p in files for line in p.read_bytes().splitlines())
        for path in files:
            size = path.stat().st_size
            assert size <= max_bytes, (path.name, size)
            if path.name != name:  # a rotated file was full: the next line did not fit
                assert size > max_bytes - longest, (path.name, size)
        # What is kept is the newest lines, contiguous across the generations.
        numbers = [int(n) for p in files for n in re.findall(r"line (\d{5})", p.read_text())]
        assert numbers == list(range(numbers[0], 600))
        assert 600 - numbers[0] > backups * max_bytes // longest


def test_rotation_applies_to_agent_files_too(log_dir: Path) -> None:
    setup_logging(log_dir, log_max_bytes=2048, log_backups=2)
    log = get_agent_logger("image_sourcing")
    for n in range(200):
        log.info("image %d", n)
    files = generations(log_dir, "image_agent.log")
    assert [p.name for p in files] == ["image_agent.log.2", "image_agent.log.1", "image_agent.log"]
    assert all(p.stat().st_size <= 2048 for p in files)
    assert files[-1].read_text().rstrip().endswith("image 199 | agent=image_sourcing")


def test_a_file_that_already_exists_counts_toward_the_size(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("x" * 900 + "\n")
    handler = RotatingFile(str(path), 1000, 1, logging.Formatter("%(message)s"))
    try:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "y" * 200, (), None)
        handler.handle(record)
    finally:
        handler.close()
    assert (tmp_path / "app.log.1").read_text() == "x" * 900 + "\n"
    assert path.read_text() == "y" * 200 + "\n"


# --- threads -------------------------------------------------------------------------------------


def test_four_threads_ten_thousand_lines_each_across_rotations(log_dir: Path) -> None:
    threads_n, lines_n = 4, 10_000
    # Small files, enough backups that nothing is deleted: every line must be found.
    setup_logging(log_dir, log_max_bytes=256 * 1024, log_backups=200)
    # The console is not under test here; keep 40,000 lines out of pytest's capture.
    root = logging.getLogger()
    console = [h for h in root.handlers if type(h) is logging.StreamHandler]
    for handler in console:
        root.removeHandler(handler)
    log = get_main_logger()
    barrier = threading.Barrier(threads_n)

    def worker(t: int) -> None:
        barrier.wait()
        with LogContext(log, thread_no=t):
            for i in range(lines_n):
                log.info("line %d-%d", t, i, extra={"seq": i})

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = json_records(log_dir)
    assert len(generations(log_dir, "main_structured.jsonl")) > 10  # it did rotate, often
    seen = Counter((r["thread_no"], r["seq"]) for r in records)
    assert len(records) == threads_n * lines_n
    assert set(seen) == {(t, i) for t in range(threads_n) for i in range(lines_n)}
    assert max(seen.values()) == 1
    for record in records:
        assert record["message"] == f"line {record['thread_no']}-{record['seq']}"
    # Each thread's lines are in order, even across files.
    for t in range(threads_n):
        assert [r["seq"] for r in records if r["thread_no"] == t] == list(range(lines_n))

    text_pairs: Counter[tuple[int, int]] = Counter()
    for path in generations(log_dir, "main.log"):
        for line in path.read_text().splitlines():
            match = TEXT_LINE.match(line)
            assert match, line
            text_pairs[(int(match[1]), int(match[2]))] += 1
    assert len(text_pairs) == threads_n * lines_n and max(text_pairs.values()) == 1


# --- worker processes ----------------------------------------------------------------------------


def _spawned_task(task: int, lines: int) -> int:
    log = get_agent_logger("vehicle")
    with LogContext(log, task=task):
        for i in range(lines):
            log.info("task %d line %d", task, i, extra={"seq": i, "worker_pid": os.getpid()})
        try:
            raise ValueError(f"task {task} token=abc123")
        except ValueError:
            log.exception("task %d failed", task)
    return os.getpid()


def test_spawned_workers_log_through_the_parent_without_losing_a_line(log_dir: Path) -> None:
    tasks, lines = 6, 400
    setup_logging(log_dir, log_max_bytes=32 * 1024, log_backups=100)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=3,
        mp_context=context,
        initializer=configure_worker_logging,
        initargs=(log_queue(),),
    ) as pool:
        pids = set(pool.map(_spawned_task, range(tasks), [lines] * tasks))
    logs.shutdown_logging()  # drains the queue, then closes the files

    assert os.getpid() not in pids and len(pids) > 1
    records = json_records(log_dir)
    infos = [r for r in records if r["level"] == "INFO"]
    assert Counter((r["task"], r["seq"]) for r in infos) == Counter(
        (t, i) for t in range(tasks) for i in range(lines)
    )
    assert {r["worker_pid"] for r in infos} == pids
    assert all(r["agent"] == "vehicle_applications" for r in records)
    errors = [r for r in records if r["level"] == "ERROR"]
    assert sorted(r["task"] for r in errors) == list(range(tasks))
    for error in errors:
        assert error["exception_type"] == "ValueError"
        assert error["exception_message"] == f"task {error['task']} token=[REDACTED]"
        assert "Traceback (most recent call last)" in error["exception_stacktrace"]
        assert "abc123" not in json.dumps(error)
    assert len(generations(log_dir, "main_structured.jsonl")) > 3  # rotated by the parent
    vehicle = "".join(p.read_text() for p in generations(log_dir, "vehicle_agent.log"))
    assert len(re.findall(r"task \d+ line \d+ \|", vehicle)) == tasks * lines


def _forked_child(lines: int) -> None:
    root = logging.getLogger()
    # Inherited file handlers were replaced by the pipe to the parent's writer.
    if any(isinstance(h, RotatingFile) for h in root.handlers):
        sys.exit(3)
    if not any(isinstance(h, ToParentHandler) for h in root.handlers):
        sys.exit(4)
    for i in range(lines):
        get_main_logger().info("forked %d line %d", os.getpid(), i, extra={"seq": i})


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _wait(pid: int, deadline: float) -> int | None:
    """The child's exit code, or None (and the child killed) past the deadline."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_forked_workers_switch_to_the_queue_by_themselves(log_dir: Path) -> None:
    children, lines = 12, 300
    setup_logging(log_dir, log_max_bytes=16 * 1024, log_backups=200)
    # An application handler of the parent's: forked children keep their own
    # copy, so the parent's writer must not hand it their records a second time.
    app_handler = _Collect()
    logging.getLogger().addHandler(app_handler)
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_forked_child, args=(lines,)) for _ in range(children)]
    # Started one after another while the parent's writer is busy with the
    # earlier children's lines (console included): a child must not inherit a
    # stream locked half-way through a write, or it hangs on its first flush.
    for process in processes:
        process.start()
    deadline = time.monotonic() + 60
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    hung = [p for p in processes if p.exitcode is None]
    for process in hung:
        process.kill()
        process.join()
    assert not hung, f"{len(hung)} forked children hung"
    assert [p.exitcode for p in processes] == [0] * children
    # A raw fork that leaves with os._exit (no clean-up at all) loses nothing either.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            _forked_child(lines)
            code = 0
        finally:
            os._exit(code)
    assert _wait(pid, deadline=time.monotonic() + 60) == 0
    get_main_logger().info("parent done")
    logs.shutdown_logging()
    logging.getLogger().removeHandler(app_handler)
    assert app_handler.messages == ["parent done"]

    records = json_records(log_dir)
    forked = Counter(
        (int(r["message"].split()[1]), r["seq"])
        for r in records
        if r["message"].startswith("forked")
    )
    pids = {p.pid for p in processes} | {pid}
    assert {child for child, _ in forked} == pids
    assert forked == Counter((child, i) for child in pids for i in range(lines))
    assert [r["message"] for r in records].count("parent done") == 1


def test_a_worker_whose_parent_is_gone_falls_back_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    queue = LogQueue(new_queue(), logging.INFO, logging.DEBUG)
    queue.queue._reader.close()  # type: ignore[attr-defined]  # no reader: the parent exited
    handler = ToParentHandler(queue)
    try:
        for n in range(3):
            record = logging.LogRecord("w", logging.INFO, __file__, 1, "lost? %d", (n,), None)
            handler.handle(record)
    finally:
        handler.close()
        queue.queue._writer.close()  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert err.count("the parent's log writer is gone") == 1
    assert [line.split(": ", 1)[1] for line in err.splitlines()[1:]] == [
        "lost? 0",
        "lost? 1",
        "lost? 2",
    ]


def test_log_queue_carries_the_parent_levels(log_dir: Path) -> None:
    setup_logging(log_dir, log_level="WARNING", log_operations_level="INFO")
    queue = log_queue()
    assert isinstance(queue, LogQueue)
    assert (queue.level, queue.completion_level) == (logging.WARNING, logging.INFO)
    assert log_queue() is queue

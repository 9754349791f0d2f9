"""JSON logging: keys, trace correlation, agent files, levels, context, redaction, bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext
from prometheus_client import CollectorRegistry

from dpagent.telemetry import (
    SUCCESS,
    LogContext,
    OperationTimer,
    get_agent_logger,
    get_main_logger,
    instrument,
    log_context,
    logs,
)
from dpagent.telemetry.config import SETTINGS, resolve
from dpagent.telemetry.log_format import ConsoleFormatter

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
REQUIRED_KEYS = {"timestamp", "level", "logger", "message"}
AGENTS = [
    ("image_sourcing", "image", "image_agent.log"),
    ("vehicle_applications", "vehicle", "vehicle_agent.log"),
    ("bigcommerce_upload", "bigcommerce", "bigcommerce_agent.log"),
]


def _no_constants(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")  # NaN/Infinity are not JSON for Loki either


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line, parse_constant=_no_constants) for line in lines]


def setup_logging(log_dir: Path, **overrides: Any) -> None:
    logs.configure_logging(resolve({"log_dir": str(log_dir), **overrides}, environ={}))


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "logs"
    logs.shutdown_logging()


# --- keys and trace correlation -------------------------------------------------------------


def test_every_json_line_parses_and_has_the_required_keys(log_dir: Path) -> None:
    setup_logging(log_dir, log_level="DEBUG")
    log = get_main_logger()
    log.debug("debug %d", 1)
    log.info("info", extra={"sku": "ABC-1"})
    log.success("done")
    log.warning("careful")
    try:
        raise KeyError("missing")
    except KeyError:
        log.exception("failed")
    records = read_jsonl(log_dir / "main_structured.jsonl")
    assert [r["level"] for r in records] == ["DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"]
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    for record in records:
        assert record.keys() >= REQUIRED_KEYS
        assert list(record)[:4] == ["timestamp", "level", "logger", "message"]
        assert RFC3339_UTC.match(record["timestamp"]), record["timestamp"]
        assert dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")) > before
        assert record["logger"] == "dpagent.main"
    assert records[0]["message"] == "debug 1"
    assert records[1]["sku"] == "ABC-1"
    error = records[-1]
    assert error["exception_type"] == "KeyError"
    assert error["exception_message"] == "'missing'"
    assert error["exception_stacktrace"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in error["exception_stacktrace"]
    assert "trace_id" not in error  # no span current: no ids, rather than invalid ones


def test_operation_records_carry_the_trace_id_of_their_span(
    log_dir: Path,
    registry: CollectorRegistry,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    setup_logging(log_dir, log_level="DEBUG")

    @instrument("image_sourcing", "download", registry=registry, tracer_provider=tracer_provider)
    def download(sku: str) -> None:
        get_agent_logger("image").info("fetching %s", sku)
        raise ConnectionError("upstream closed")

    @instrument("vehicle_applications", "parse", registry=registry, tracer_provider=tracer_provider)
    def parse() -> int:
        return 1

    with pytest.raises(ConnectionError):
        download("ABC-1")
    parse()
    spans: dict[str, SpanContext] = {}
    for span in span_exporter.get_finished_spans():
        assert span.context is not None
        spans[span.name] = span.context
    records = read_jsonl(log_dir / "main_structured.jsonl")
    by_message = {r["message"].split(" ")[0]: r for r in records}

    download_trace = format(spans["image_sourcing.download"].trace_id, "032x")
    download_span = format(spans["image_sourcing.download"].span_id, "016x")
    inner = by_message["fetching"]
    assert (inner["trace_id"], inner["span_id"]) == (download_trace, download_span)
    assert inner["agent"] == "image_sourcing"

    failure = by_message["image_sourcing.download"]
    assert failure["level"] == "ERROR"
    assert failure["logger"] == logs.OPERATIONS_LOGGER
    assert (failure["trace_id"], failure["span_id"]) == (download_trace, download_span)
    assert failure["agent"] == "image_sourcing"
    assert failure["operation"] == "download"
    assert failure["outcome"] == "failure"
    assert failure["error_type"] == failure["exception_type"] == "ConnectionError"
    assert failure["exception_message"] == "upstream closed"
    assert 0 <= failure["duration_seconds"] < 5
    assert "ConnectionError: upstream closed" in failure["exception_stacktrace"]

    completion = by_message["vehicle_applications.parse"]
    assert completion["level"] == "DEBUG"
    assert completion["outcome"] == "success"
    assert completion["trace_id"] == format(spans["vehicle_applications.parse"].trace_id, "032x")
    for record in (inner, failure, completion):
        assert re.fullmatch(r"[0-9a-f]{32}", record["trace_id"])
        assert re.fullmatch(r"[0-9a-f]{16}", record["span_id"])


class _FakeSite:
    def __init__(self, agent: str, operation: str) -> None:
        self.agent, self.operation = agent, operation


class _FakeCall:
    def __init__(self, agent: str, operation: str) -> None:
        self.site = _FakeSite(agent, operation)


def test_records_inside_an_operation_carry_its_agent_and_operation(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The running operation as instrument exposes it (current_operation().site).
    running: list[_FakeCall] = []
    monkeypatch.setattr(log_context, "_current_operation", lambda: running[-1] if running else None)
    setup_logging(log_dir)
    log = get_main_logger()
    with LogContext(log, sku="ABC-1", agent="outer_agent"):
        running.append(_FakeCall("bigcommerce_upload", "upload"))
        log.info("uploading")  # the operation started inside the context: it wins
        with LogContext(log, agent="inner_agent"):
            log.info("relabelled")  # ...unless a context inside the operation says otherwise
        running.pop()
        log.info("after")
    uploading, relabelled, after = read_jsonl(log_dir / "main_structured.jsonl")
    assert (uploading["agent"], uploading["operation"], uploading["sku"]) == (
        "bigcommerce_upload",
        "upload",
        "ABC-1",
    )
    assert (relabelled["agent"], relabelled["operation"]) == ("inner_agent", "upload")
    assert (after["agent"], after.get("operation")) == ("outer_agent", None)
    assert "uploading" in (log_dir / "bigcommerce_agent.log").read_text()


def test_context_fields_reach_the_records_of_an_operation(
    log_dir: Path, registry: CollectorRegistry
) -> None:
    setup_logging(log_dir)
    with (
        LogContext(None, sku="ABC-1", batch=3),
        OperationTimer("bigcommerce_upload", "upload", registry=registry) as op,
    ):
        op.mark_failure("RateLimited", "429 from the API")
    (failure,) = read_jsonl(log_dir / "main_structured.jsonl")
    assert (failure["sku"], failure["batch"], failure["error_type"]) == ("ABC-1", 3, "RateLimited")
    assert "RateLimited: 429 from the API" in failure["message"]
    assert "upload failed" in (log_dir / "bigcommerce_agent.log").read_text()


# --- agent loggers and files -----------------------------------------------------------------


@pytest.mark.parametrize(("label", "short", "filename"), AGENTS)
def test_agent_logger_writes_its_own_file(
    log_dir: Path, label: str, short: str, filename: str
) -> None:
    setup_logging(log_dir)
    log = get_agent_logger(short)
    assert log is get_agent_logger(label) is get_agent_logger(f"{short}_agent")
    log.info("hello from %s", short)
    record = read_jsonl(log_dir / "main_structured.jsonl")[-1]
    assert record["agent"] == label
    assert record["logger"] == f"dpagent.agent.{label}"
    assert f"hello from {short}" in (log_dir / filename).read_text()
    assert f"hello from {short}" in (log_dir / "main.log").read_text()
    for _, _, other in AGENTS:
        if other != filename:
            path = log_dir / other
            assert not path.exists() or f"hello from {short}" not in path.read_text()


@pytest.mark.parametrize(("label", "short", "filename"), AGENTS)
def test_failed_operation_error_lands_in_the_agent_file(
    log_dir: Path, registry: CollectorRegistry, label: str, short: str, filename: str
) -> None:
    setup_logging(log_dir)

    @instrument(label, "step", registry=registry)
    def step() -> None:
        raise RuntimeError(f"{short} broke")

    with pytest.raises(RuntimeError):
        step()
    for name in (filename, "main.log", "main_errors.log"):
        text = (log_dir / name).read_text()
        assert f"{label}.step failed after" in text, name
        assert f"RuntimeError: {short} broke" in text, name
    others = [f for _, _, f in AGENTS if f != filename]
    for other in others:
        assert not (log_dir / other).exists() or "broke" not in (log_dir / other).read_text()


def test_other_agents_get_a_file_named_after_them(log_dir: Path) -> None:
    setup_logging(log_dir)
    get_agent_logger("pricing").warning("price missing")
    assert "price missing" in (log_dir / "pricing_agent.log").read_text()
    files = logs.log_files()
    assert files["pricing"] == str(log_dir / "pricing_agent.log")
    assert files["structured"] == str(log_dir / "main_structured.jsonl")
    assert {"main", "errors", "image_sourcing"} <= files.keys()
    # A data-borne agent value never creates a file.
    get_main_logger().info("from data", extra={"agent": "../../etc/evil"})
    assert sorted(p.name for p in log_dir.iterdir()) == [
        "main.log",
        "main_errors.log",
        "main_structured.jsonl",
        "pricing_agent.log",
    ]


def test_an_application_logger_class_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    class AuditLogger(logging.Logger):
        def audit(self, message: str) -> None:
            self.warning("AUDIT %s", message)

    logging.setLoggerClass(AuditLogger)
    try:
        log = get_agent_logger("audited_agent")
    finally:
        logging.setLoggerClass(logging.Logger)
    assert isinstance(log, AuditLogger)
    log.audit("kept")
    log.success("and success")
    messages = [(r.levelname, r.getMessage(), r.__dict__["agent"]) for r in caplog.records]
    assert messages == [
        ("WARNING", "AUDIT kept", "audited_agent"),
        ("SUCCESS", "and success", "audited_agent"),
    ]


@pytest.mark.parametrize("bad", ["", "../x", "a b", "x" * 101, "/abs"])
def test_agent_names_that_are_not_file_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="agent name"):
        get_agent_logger(bad)


def test_errors_file_holds_error_and_up_only(log_dir: Path) -> None:
    setup_logging(log_dir)
    log = get_main_logger()
    log.warning("just a warning")
    log.error("an error")
    log.critical("a critical")
    errors = (log_dir / "main_errors.log").read_text()
    assert "an error" in errors and "a critical" in errors
    assert "just a warning" not in errors
    assert "just a warning" in (log_dir / "main.log").read_text()


# --- levels -------------------------------------------------------------------------------------


def test_success_level_sits_between_info_and_warning(
    log_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert logging.INFO < SUCCESS == 25 < logging.WARNING
    assert logging.getLevelName(SUCCESS) == "SUCCESS"
    setup_logging(log_dir, log_level="SUCCESS")
    log = get_main_logger()
    log.info("hidden")
    log.success("shown %s", "ok")
    (record,) = [r for r in caplog.records if r.name == "dpagent.main"]
    assert (record.levelno, record.getMessage()) == (SUCCESS, "shown ok")
    # The caller is this test, not the .success() helper.
    assert record.funcName == "test_success_level_sits_between_info_and_warning"
    assert [r["message"] for r in read_jsonl(log_dir / "main_structured.jsonl")] == ["shown ok"]


def test_completions_are_logged_at_the_configured_level(
    log_dir: Path, registry: CollectorRegistry
) -> None:
    setup_logging(log_dir, log_level="INFO", log_operations_level="INFO")

    @instrument("image_sourcing", "resize", registry=registry)
    def resize() -> None:
        pass

    resize()
    (record,) = read_jsonl(log_dir / "main_structured.jsonl")
    assert (record["level"], record["outcome"]) == ("INFO", "success")
    assert record["operation"] == "resize"


def test_disabled_completions_build_no_record(
    log_dir: Path, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_logging(log_dir, log_level="INFO")  # completions at DEBUG: disabled

    def must_not_be_called(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a disabled completion reached Logger.log")

    monkeypatch.setattr(logs._log, "log", must_not_be_called)

    @instrument("image_sourcing", "resize", registry=registry)
    def resize() -> None:
        pass

    resize()
    assert (log_dir / "main_structured.jsonl").read_text() == ""


# --- LogContext -------------------------------------------------------------------------------


def test_log_context_nests_and_restores(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log = get_main_logger()
    with LogContext(log, sku="A", batch=1) as entered:
        assert entered is log
        with LogContext(log, sku="B", step="resize"):
            assert dict(logs.current_fields()) == {"sku": "B", "batch": 1, "step": "resize"}
            log.info("inner")
        log.info("outer")
    log.info("none")
    inner, outer, none = (r.__dict__ for r in caplog.records if r.name == "dpagent.main")
    assert (inner["sku"], inner["batch"], inner["step"]) == ("B", 1, "resize")
    assert (outer["sku"], outer["batch"]) == ("A", 1) and "step" not in outer
    assert "sku" not in none and "batch" not in none
    assert dict(logs.current_fields()) == {}


def test_log_context_fields_apply_to_any_logger_and_explicit_extra_wins(
    log_dir: Path,
) -> None:
    setup_logging(log_dir)
    with LogContext(None, sku="CTX", name="clashes-with-LogRecord.name"):
        logging.getLogger("someone.else").warning("third party")
        get_main_logger().warning("explicit", extra={"sku": "EXTRA"})
    third, explicit = read_jsonl(log_dir / "main_structured.jsonl")
    assert third["sku"] == "CTX" and third["logger"] == "someone.else"
    assert third["field_name"] == "clashes-with-LogRecord.name"
    assert explicit["sku"] == "EXTRA"


def test_log_context_is_isolated_between_asyncio_tasks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log = get_main_logger()

    async def worker(sku: str) -> None:
        async with LogContext(log, sku=sku):
            for step in range(5):
                await asyncio.sleep(0)  # let the other tasks run in between
                with LogContext(log, step=step):
                    log.info("%s step %d", sku, step)

    async def main() -> None:
        await asyncio.gather(*(worker(f"SKU-{n}") for n in range(4)))

    asyncio.run(main())
    records = [r for r in caplog.records if r.name == "dpagent.main"]
    assert len(records) == 20
    for record in records:
        sku, _, step = record.getMessage().split(" ")
        assert record.__dict__["sku"] == sku
        assert record.__dict__["step"] == int(step)
    # Interleaved for real: not all of one task's records first.
    assert [r.__dict__["sku"] for r in records[:4]] != ["SKU-0"] * 4


def test_log_context_does_not_leak_into_other_threads(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log = get_main_logger()
    with LogContext(log, sku="MAIN"):
        thread = threading.Thread(target=lambda: log.info("from thread"))
        thread.start()
        thread.join()
    (record,) = [r for r in caplog.records if r.getMessage() == "from thread"]
    assert "sku" not in record.__dict__


# --- redaction --------------------------------------------------------------------------------

SECRET = "s3cr3t-VALUE-9f8e7d"
SECRET_KEYS = [
    "authorization",
    "Authorization",
    "x-auth-token",
    "X-Auth-Token",
    "token",
    "password",
    "secret",
    "api_key",
    "client_secret",
]


def _all_output(log_dir: Path, console: str) -> str:
    return console + "".join(p.read_text() for p in sorted(log_dir.iterdir()))


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_values_under_secret_keys_are_redacted_in_every_output(
    log_dir: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    setup_logging(log_dir)
    log = get_agent_logger("bigcommerce_upload")
    with LogContext(log, **{key: SECRET}):
        log.error("call failed", extra={key: SECRET, "headers": {key: SECRET, "Accept": "json"}})
    output = _all_output(log_dir, capsys.readouterr().err)
    assert "call failed" in output
    assert SECRET not in output
    record = read_jsonl(log_dir / "main_structured.jsonl")[0]
    assert record[key] == "[REDACTED]"
    assert record["headers"] == {key: "[REDACTED]", "Accept": "json"}
    assert "[REDACTED]" in (log_dir / "bigcommerce_agent.log").read_text()


@pytest.mark.parametrize(
    "message",
    [
        f"GET /v3/catalog with Authorization: Bearer {SECRET}",
        f"retrying, bearer {SECRET} rejected",
        f"headers={{'X-Auth-Token': '{SECRET}'}}",
        f'body {{"password": "{SECRET}"}}',
        f"https://api.example/x?api_key={SECRET}&page=2",
    ],
)
def test_credentials_inside_messages_are_redacted(
    log_dir: Path, capsys: pytest.CaptureFixture[str], message: str
) -> None:
    setup_logging(log_dir)
    log = get_main_logger()
    log.error(message)
    try:
        raise PermissionError(message)
    except PermissionError:
        log.exception("upstream said no")
    outputs = {"console": capsys.readouterr().err}
    outputs.update({p.name: p.read_text() for p in log_dir.iterdir()})
    assert sorted(outputs) == ["console", "main.log", "main_errors.log", "main_structured.jsonl"]
    for name, text in outputs.items():
        assert SECRET not in text, name
        assert "upstream said no" in text and "[REDACTED]" in text, name
    first, second = read_jsonl(log_dir / "main_structured.jsonl")
    assert "[REDACTED]" in first["message"]
    assert "[REDACTED]" in second["exception_message"]


# --- bad input --------------------------------------------------------------------------------


class _Thing:
    def __repr__(self) -> str:
        return "<Thing 42>"


class _Broken:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_bad_input_never_raises_and_unencodable_values_use_repr(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_logging(log_dir)
    # Only dpagent's handlers are under test: pytest's capture handlers re-raise
    # formatting errors by design.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if h in logs._state.handlers])
    log = get_main_logger()
    circular: list[Any] = [1]
    circular.append(circular)
    log.info(
        "values",
        extra={
            "thing": _Thing(),
            "broken": _Broken(),
            "nan": float("nan"),
            "raw": b"\x00\xff",
            "tuple_keys": {(1, 2): "a"},
            "circular": circular,
            "when": dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
        },
    )
    log.info("%d items", "not a number")  # wrong %-argument
    log.info(_Broken())  # a message whose str() raises
    log.info("clash", extra={"message": "m", "name": "n", "levelname": "l"})
    log.info("surrogate \udcff here")
    values, wrong, broken, clash, surrogate = read_jsonl(log_dir / "main_structured.jsonl")
    assert values["thing"] == "<Thing 42>"
    assert values["broken"] == "<unrepresentable _Broken>"
    assert values["nan"] == "nan"
    assert values["raw"] == repr(b"\x00\xff")
    assert values["tuple_keys"] == {"(1, 2)": "a"}
    assert values["circular"][0] == 1
    assert values["when"] == "2026-12-01T00:00:00+00:00"
    assert "'%d items'" in wrong["message"] and "not a number" in wrong["message"]
    assert "formatting failed" in wrong["message"]
    assert broken["level"] == "INFO"
    assert clash["field_message"] == "m"
    assert (clash["field_name"], clash["field_levelname"]) == ("n", "l")
    assert clash["message"] == "clash" and clash["logger"] == "dpagent.main"
    assert "surrogate" in surrogate["message"]
    text = (log_dir / "main.log").read_text()
    assert "<Thing 42>" in text and "surrogate" in text and text.count("\n") >= 5


# --- outputs and configuration ------------------------------------------------------------------


def test_unwritable_log_dir_is_one_clear_error_then_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should be")
    try:
        setup_logging(blocker / "logs")
        get_main_logger().warning("still logging")
    finally:
        logs.shutdown_logging()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "dpagent.telemetry"
    message = errors[0].getMessage()
    assert str(blocker / "logs") in message and "console only" in message
    console = capsys.readouterr().err
    assert "cannot write log files" in console and "still logging" in console
    assert blocker.read_text() == "a file where the log directory should be"


def test_configure_twice_replaces_handlers_instead_of_duplicating(log_dir: Path) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    setup_logging(log_dir)
    after_first = len(root.handlers)
    setup_logging(log_dir)
    assert len(root.handlers) == after_first > before
    get_main_logger().warning("once")
    assert len(read_jsonl(log_dir / "main_structured.jsonl")) == 1
    logs.shutdown_logging()
    assert len(root.handlers) == before


def test_json_stdout_switch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        setup_logging(tmp_path / "logs", log_json_stdout=True, log_files=False)
        with LogContext(None, sku="ABC-1"):
            get_agent_logger("vehicle").warning("to the shipper")
    finally:
        logs.shutdown_logging()
    out, err = capsys.readouterr()
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["message"] == "to the shipper"
    assert (record["agent"], record["sku"]) == ("vehicle_applications", "ABC-1")
    assert "to the shipper" not in err
    assert not (tmp_path / "logs").exists()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_colour_only_on_a_tty_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert logs._colour_wanted(_Tty()) is True
    assert logs._colour_wanted(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert logs._colour_wanted(_Tty()) is False

    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), None)
    coloured = ConsoleFormatter(colour=True).format(record)
    plain = ConsoleFormatter(colour=False).format(record)
    assert "\x1b[31m" in coloured and "boom" in coloured
    assert "\x1b[" not in plain and "ERROR" in plain


def test_console_is_plain_when_not_a_tty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        setup_logging(tmp_path / "logs", log_files=False)
        get_main_logger().error("plain please")
    finally:
        logs.shutdown_logging()
    err = capsys.readouterr().err
    assert "plain please" in err and "\x1b[" not in err


def test_docs_list_every_log_setting_and_json_key() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "logging.md").read_text()
    for setting in SETTINGS:
        if setting.name.startswith("log_"):
            assert f"`{setting.env}`" in doc and f"`{setting.name}`" in doc, setting.name
    for key in [*REQUIRED_KEYS, "trace_id", "span_id", "exception_type", "exception_stacktrace"]:
        assert f"| `{key}` |" in doc, key

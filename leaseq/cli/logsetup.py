"""structlog configuration for leaseq's own processes (the CLI). The library never
configures logging; an application embedding leaseq configures structlog itself.

Every event becomes one line written with a single ``os.write`` of the whole line (a
multi-line console traceback included), so the lines of processes sharing one stderr
never cut into each other. Records of the standard library's ``logging`` (a handler's
``logging.getLogger(__name__)``, warnings) go through the same renderer. Each line
carries ``pid``; a child of ``leaseq worker -p N`` adds ``process``, its index 0..N-1
(``LEASEQ_WORKER_INDEX``).
"""

from __future__ import annotations

import json
import logging
import os
import select
import sys
import threading
from collections.abc import Callable
from json import encoder as _json_encoder
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["auto", "console", "json"]

TTY_ENV = "LEASEQ_LOG_TTY"
"""Set by the supervisor for its children, whose stderr is a pipe to it: ``1`` when the
supervisor's own stderr is a terminal, so ``auto`` picks the same format in both."""

_lock = threading.RLock()


def write_line(fd: int, data: bytes) -> None:
    """Write ``data`` (whole lines) to ``fd``, bypassing Python's buffers: one ``write()``
    for the whole of it unless the kernel takes less, then the rest at once.

    A write of up to ``PIPE_BUF`` (4096) bytes to a pipe, and any write to a regular file
    or a terminal, lands in one piece even when other processes write to the same file.
    """
    view = memoryview(data)
    # Threads of one process (to_thread, the stdlib's handlers) queue here, so a long
    # line that the kernel takes in parts is never split by another of our own lines.
    # Reentrant: a signal handler that logs mid-write must not deadlock the process.
    with _lock:
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                # Someone made the shared descriptor non-blocking: wait until it drains.
                select.select([], [fd], [])
            except BrokenPipeError:
                # Nobody reads our stderr any more; failing the caller (a job, a
                # shutdown) over a log line would be worse than losing the line.
                return


class LineLogger:
    """A structlog logger that writes each rendered event as one line to a file
    descriptor (stderr by default) with :func:`write_line`."""

    def __init__(self, fd: int = 2) -> None:
        self._fd = fd

    def msg(self, message: str) -> None:
        """Write ``message`` and a newline."""
        write_line(self._fd, message.encode("utf-8", "backslashreplace") + b"\n")

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _line_logger(*args: Any) -> LineLogger:
    return LineLogger()


class LineHandler(logging.Handler):
    """A ``logging`` handler that writes each formatted record as one line (the
    standard ``StreamHandler`` writes the message and its newline as two writes)."""

    def __init__(self, fd: int = 2) -> None:
        super().__init__()
        self._fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and write it with :func:`write_line`."""
        try:
            line = self.format(record)
        except Exception:  # logging's contract: report it, never raise
            self.handleError(record)
            return
        write_line(self._fd, line.encode("utf-8", "backslashreplace") + b"\n")


class _MultilineConsole:
    """The console renderer, with a multi-line string value (a failed job's ``error``
    ends with its traceback) shown as lines of their own under the event instead of
    one ``repr`` full of ``\\n``."""

    def __init__(self, renderer: structlog.dev.ConsoleRenderer) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        blocks = []
        for key, value in event_dict.items():
            # The renderer itself puts these (and the event) on lines of their own.
            if key not in ("event", "exception", "stack") and isinstance(value, str) \
                    and "\n" in value:
                event_dict[key], _, rest = value.partition("\n")
                blocks.append(rest)
        return "\n".join([self._renderer(logger, method, event_dict), *blocks])


class JsonDumps:
    """The JSON renderer's serializer: the text ``json.dumps(obj, default=default)``
    writes, from CPython's C encoder made once per ``default``. ``json.dumps`` given any
    keyword makes a new encoder on every call; that was 2 µs of the ~10 µs a JSON line
    costs, and a worker logging at INFO writes one line per job.

    Made without ``json.dumps``'s circular-reference markers: a value it cannot encode
    (one that contains itself, a ``default`` that raises) is encoded again by
    ``json.dumps``, so what is raised is what ``json.dumps`` raises."""

    def __init__(self) -> None:
        self._default: Callable[[Any], Any] | None = None
        self._encode: Any = None

    def __call__(self, obj: Any, *, default: Callable[[Any], Any]) -> str:
        """``obj`` as JSON text, exactly as ``json.dumps(obj, default=default)``."""
        if default is not self._default:
            make = getattr(_json_encoder, "c_make_encoder", None)  # not in typeshed
            self._encode = None if make is None else make(
                None, default, _json_encoder.encode_basestring_ascii, None, ": ", ", ",
                False, False, True)
            self._default = default
        if self._encode is not None:
            try:
                return "".join(self._encode(obj, 0))
            except Exception:  # noqa: S110 - json.dumps below raises it as users know it
                pass
        return json.dumps(obj, default=default)


def _add_process(index: int | None) -> Processor:
    def add_process(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        # Always the writer's: a field called pid from a caller would make it ambiguous.
        event_dict["pid"] = os.getpid()
        if index is not None:
            event_dict["process"] = index
        return event_dict

    return add_process


def _worker_index() -> int | None:
    raw = os.environ.get("LEASEQ_WORKER_INDEX")
    return int(raw) if raw is not None and raw.isdigit() else None


def stderr_is_tty() -> bool:
    """Whether our lines end up on a terminal (for a supervised child: the
    supervisor's, see :data:`TTY_ENV`)."""
    relayed = os.environ.get(TTY_ENV)
    if relayed is not None:
        return relayed == "1"
    return sys.stderr.isatty()


def configure(fmt: LogFormat = "auto", level: str = "info") -> None:
    """Console renderer on a TTY, one JSON object per line otherwise, to stderr; the
    standard library's loggers render the same way at the same ``level``."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    tty = stderr_is_tty()
    use_json = fmt == "json" or (fmt == "auto" and not tty)
    renderer: Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer(serializer=JsonDumps())
    else:
        # Plain tracebacks, multi-line: the same text with or without rich installed,
        # and no local variables (a Redis URL with its password) in the logs.
        renderer = _MultilineConsole(structlog.dev.ConsoleRenderer(
            colors=tty, exception_formatter=structlog.dev.plain_traceback))
    # JSON needs the traceback as a string field; the console renderer formats
    # exc_info itself, keeping the traceback's lines.
    tail: list[Processor] = [structlog.processors.format_exc_info] if use_json else []
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_process(_worker_index()),
    ]
    structlog.configure(
        processors=[*shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_line_logger,
        cache_logger_on_first_use=True,
    )
    handler = LineHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name,
                           structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail,
                    renderer],
    ))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # warnings.warn from handlers and libraries: a JSON line too, not bare text.
    logging.captureWarnings(True)

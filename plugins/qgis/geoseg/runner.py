"""Run the ``geoseg`` command line of a separate Python environment as a subprocess.

The plugin never imports geoseg (nor numpy-heavy libraries, torch or rasterio) into QGIS's
Python: it starts the configured ``geoseg`` executable, turns its JSON progress lines (stdout)
into ``feedback.setProgress`` calls and its log lines (stderr) into feedback messages, kills the
process and its children when the user cancels, and raises ``QgsProcessingException`` with the
command's own error message when it fails.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
from typing import IO, Dict, List, Optional, Sequence, Tuple

from qgis.core import QgsProcessingException, QgsProcessingFeedback

#: Environment variable naming the geoseg executable (used when the Processing setting is empty).
EXECUTABLE_ENV = "GEOSEG_EXECUTABLE"
#: Prefix of the single error line the geoseg CLI writes to stderr before exiting with code 1.
ERROR_PREFIX = "geoseg: error:"
#: Seconds a cancelled process gets to exit on SIGTERM before its process group is killed.
TERMINATE_GRACE_S = 2.0
#: How often (seconds) the output loop wakes up to check for cancellation.
POLL_S = 0.1
#: Variables of QGIS's own Python that must not leak into the geoseg environment.
_PYTHON_ENV_VARS = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE")


def find_executable(configured: str = "") -> str:
    """The geoseg executable to run.

    Parameters
    ----------
    configured : str
        The provider setting "path to the geoseg executable"; empty means not set.

    Returns
    -------
    str
        ``configured`` when set, else ``$GEOSEG_EXECUTABLE`` when set, else ``geoseg`` found on
        ``PATH``.

    Raises
    ------
    QgsProcessingException
        When no executable is configured or found, or the configured one does not exist.
    """
    candidate = (configured or "").strip() or os.environ.get(EXECUTABLE_ENV, "").strip()
    if candidate:
        resolved = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
        if resolved is None:
            raise QgsProcessingException(
                f"The geoseg executable '{candidate}' does not exist or is not executable. Set its "
                "path in Settings > Options > Processing > Providers > geoseg."
            )
        return resolved
    found = shutil.which("geoseg")
    if found is None:
        raise QgsProcessingException(
            "No geoseg executable found on PATH. Install geoseg in a Python environment and set the "
            "path to its 'geoseg' executable in Settings > Options > Processing > Providers > geoseg "
            f"(or set the {EXECUTABLE_ENV} environment variable)."
        )
    return found


def run_geoseg(executable: str, args: Sequence[str], feedback: QgsProcessingFeedback) -> List[dict]:
    """Run ``executable args...`` and report its progress and messages to ``feedback``.

    Parameters
    ----------
    executable : str
        Path to the geoseg executable (see :func:`find_executable`).
    args : sequence of str
        Command line arguments after the executable, e.g. ``["run", "pipe.yaml", ...]``.
    feedback : QgsProcessingFeedback
        Receives progress (from ``--progress json`` lines), stderr lines as info or warnings, and
        is polled for cancellation.

    Returns
    -------
    list of dict
        Every JSON object the command printed on stdout, in order (progress events and results
        such as ``geoseg eval --json`` scores).

    Raises
    ------
    QgsProcessingException
        When the command exits with a non-zero code (the message holds the command's error
        lines) or the user cancels (the process and its children are killed first).
    """
    command = [executable, *args]
    feedback.pushCommandInfo(" ".join(shlex.quote(part) for part in command))
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=_child_environment(),
            **_process_group_options(),
        )
    except OSError as exc:
        raise QgsProcessingException(f"Could not start geoseg ({executable}): {exc}") from exc
    feedback.pushDebugInfo(f"geoseg process id: {process.pid}")

    lines: "queue.Queue[Tuple[str, Optional[str]]]" = queue.Queue()
    for name, stream in (("stdout", process.stdout), ("stderr", process.stderr)):
        threading.Thread(target=_pump, args=(name, stream, lines), daemon=True).start()

    objects: List[dict] = []
    errors: List[str] = []
    stderr_tail: List[str] = []
    open_streams = 2
    while open_streams:
        if feedback.isCanceled():
            kill_process_tree(process)
            raise QgsProcessingException("geoseg was canceled; its process was stopped.")
        try:
            name, line = lines.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
        elif name == "stdout":
            _handle_stdout(line, feedback, objects, errors)
        else:
            _handle_stderr(line, feedback, errors)
            stderr_tail = (stderr_tail + [line])[-5:]
    code = process.wait()
    if code != 0:
        detail = "; ".join(errors) or "\n".join(stderr_tail) or "no error message"
        raise QgsProcessingException(f"geoseg failed (exit code {code}): {detail}")
    return objects


def kill_process_tree(process: "subprocess.Popen[str]") -> None:
    """Stop ``process`` and every process it started, then reap it.

    On POSIX the process leads its own process group (see :func:`_process_group_options`): the
    group gets SIGTERM, then SIGKILL after :data:`TERMINATE_GRACE_S` (also when the leader exited
    but workers it started are still alive). On Windows ``taskkill /T`` kills the tree.
    """
    if os.name == "nt":
        subprocess.run(
            ["taskkill", "/F", "/T", "/PID", str(process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        process.wait()
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(group: int, sig: int) -> None:
    """Send ``sig`` to the process group ``group``; a group that is already gone is fine."""
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _process_group_options() -> Dict[str, int]:
    """Popen options that put the child in a new process group, so it can be killed as a tree."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _child_environment() -> Dict[str, str]:
    """QGIS's environment without its Python settings, with unbuffered UTF-8 output."""
    env = {key: value for key, value in os.environ.items() if key not in _PYTHON_ENV_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _pump(name: str, stream: IO[str], lines: "queue.Queue[Tuple[str, Optional[str]]]") -> None:
    """Copy ``stream`` line by line into ``lines`` as ``(name, line)``; ``(name, None)`` at its end."""
    for line in iter(stream.readline, ""):
        lines.put((name, line.rstrip("\r\n")))
    stream.close()
    lines.put((name, None))


def _handle_stdout(line: str, feedback: QgsProcessingFeedback, objects: List[dict], errors: List[str]) -> None:
    """A stdout line: a JSON progress event or result, or plain text shown as info."""
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        if line.strip():
            feedback.pushInfo(line)
        return
    objects.append(obj)
    event = obj.get("event")
    if event == "start":
        feedback.setProgress(0.0)
    elif event == "progress":
        feedback.setProgress(float(obj.get("percent", 0.0)))
        for warning in obj.get("warnings") or []:
            feedback.pushWarning(f"{obj.get('input', '')}: {warning}")
        if obj.get("status") == "failed":
            errors.append(f"{obj.get('input', '')}: {obj.get('error') or 'failed'}")
        else:
            for output in obj.get("outputs") or []:
                feedback.pushInfo(f"Wrote {output}")


def _handle_stderr(line: str, feedback: QgsProcessingFeedback, errors: List[str]) -> None:
    """A stderr line: the CLI's error line goes into the exception; warnings are flagged."""
    if not line.strip():
        return
    if line.startswith(ERROR_PREFIX):
        errors.append(line[len(ERROR_PREFIX):].strip())
    elif "warning" in line.lower():
        feedback.pushWarning(line)
    else:
        feedback.pushInfo(line)

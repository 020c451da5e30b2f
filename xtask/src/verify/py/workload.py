# Prepended (after audit.py) to the spec's [verify] workload, which `cargo xtask verify` runs in
# a fresh interpreter next to the loopback OpenAI-compatible server. argv[1] is the server's
# base URL (ends with /v1), argv[2] the text every completion answers, and `--timing` is present
# in the timing runs. The workload records named checks with `check`, may ask the supervisor to
# count the server's requests with `expect_requests`, and times its first call with `timed`;
# the supervisor reports what it recorded when the script ends (or `_vfinish` is called).
# INIT (what Lambda runs unthrottled) ends after the preload when it comes first, at once otherwise;
# with `--import-after-init` too (a client that does not wait for the preload at INIT).
import time as _vtime

_vout = {"checks": [], "requests": None, "first_call_s": None}
MOCK_BASE = _vsys.argv[1] if len(_vsys.argv) > 1 else ""
MOCK_REPLY = _vsys.argv[2] if len(_vsys.argv) > 2 else ""
TIMING = "--timing" in _vsys.argv
# The preload is imported (and timed) first in timing runs, and in the workload check when that
# run doubles as the first timing run (`--preload-first`: every check, then, not a timing run's
# few).
_VPRELOAD_FIRST = TIMING or "--preload-first" in _vsys.argv
_VAFTER_INIT = "--import-after-init" in _vsys.argv


def check(name, fn):
    """Runs `fn`; a returned string is the check's detail, an exception its failure."""
    try:
        detail = fn()
        _vout["checks"].append({"name": name, "ok": True, "detail": str(detail or "")})
        return True
    except BaseException as e:  # noqa: BLE001 - one failure must not hide the others
        _vout["checks"].append({"name": name, "ok": False, "detail": _error(e)})
        return False


def timed(fn):
    """Runs `fn` and records its time as the first call's (the `first_call_seconds` timing)."""
    t0 = _vtime.perf_counter()
    value = fn()
    if _vout["first_call_s"] is None:
        _vout["first_call_s"] = _vtime.perf_counter() - t0
    return value


def expect_requests(name, at_least, what):
    """A check the supervisor decides: the server counted at least `at_least` requests."""
    _vout["requests"] = {"name": name, "at_least": at_least, "what": what}


def _vpreload(modules):
    # Timing runs only: the spec's [verify] preload modules, imported first, timed together.
    t0, c0 = _vtime.perf_counter(), _vtime.process_time()
    for m in modules:
        __import__(m)
    _vout["import_s"] = _vtime.perf_counter() - t0
    # CPU seconds: what a busy machine's other load inflates far less than the wall clock.
    _vout["import_cpu_s"] = _vtime.process_time() - c0


def _vpeak_rss_kb():
    # The interpreter's own high-water mark: what `verify --memory` compares with the limit.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _vinit_done():
    # The end of INIT: `verify --memory` applies Lambda's CPU share from here on.
    print("@@verify-init-done@@", flush=True)


def _vfinish():
    _vout["peak_rss_kb"] = _vpeak_rss_kb()
    _report(_vout)


def _vrun(name, source, preload):
    try:
        if _VPRELOAD_FIRST and not _VAFTER_INIT:
            _vpreload(preload)
        _vinit_done()
        if _VPRELOAD_FIRST and _VAFTER_INIT:
            _vpreload(preload)
        # The workload's globals are these: `check` and the others are names it can use.
        exec(compile(source, name, "exec"), globals())
    except BaseException as e:  # noqa: BLE001 - the failure is the result
        _vout["error"] = _error(e)
    _vfinish()

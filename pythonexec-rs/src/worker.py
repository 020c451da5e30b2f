# The Python half of the pythonexec worker protocol (version 1).
#
# One file, two clients: embedded in the Rust crate (pythonexec-rs, include_str!, run as
# `python -u -c <this file>`) and shipped in every layer at python/lib/pythonexec/worker.py,
# where the Node.js package runs it as `python -u <path>`.
# One JSON object per line in both directions. Requests carry an integer "id";
# every reply carries the id of the request it answers. See README.md.
# First, before any import that could be shadowed: `-c` puts the current directory first
# on sys.path, a script its own folder; a stray `json.py` or `litellm.py` there (in Lambda:
# the function's /var/task) must not shadow the real module. `os` and `sys` are loaded by
# the interpreter's start-up already.
import os
import sys

_own_dir = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else None
if sys.path and sys.path[0] in ("", os.getcwd(), _own_dir):
    del sys.path[0]

import asyncio  # noqa: E402 - after the sys.path fix on purpose
import concurrent.futures  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

PROTOCOL = 1

# The protocol owns the real stdout. fd 1 (and sys.stdout) now point at stderr,
# so a print() or a C library writing to fd 1 lands in the log, not in a reply.
_proto = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
sys.stdout = sys.stderr

# Lambda has no internet access guarantee; LiteLLM must not fetch its cost map at import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_executor = concurrent.futures.ThreadPoolExecutor(
    max_workers=int(os.environ.get("PYTHONEXEC_THREADS", "16")),
    thread_name_prefix="pythonexec",
)
_tasks = {}


def _default(obj):
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump()
    to_dict = getattr(obj, "dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class UnsendableValue(ValueError):
    """A result or chunk JSON cannot carry faithfully: NaN, an infinity, a str with a lone
    surrogate, an int outside 64 bits. Answered at once instead of being dropped."""


UnsendableValue.__module__ = "pythonexec"

# Clients decode integers as 64-bit (Rust: i64/u64); larger ones would change value.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# With separators (",", ":") a number follows "[", ":" or ","; 19 digits reach 2**63.
# Only a hit (which may be inside a string) costs a walk over the value.
_LONG_INT = re.compile(r"[\[:,]-?\d{19,}")


def _unsendable(value, root):
    """(path, what) of the first value JSON cannot carry, or None. Iterative; cycle-safe."""
    stack = [(value, root)]
    seen = set()
    while stack:
        v, path = stack.pop()
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                return path, f"a float {v!r} (JSON has no NaN or infinity)"
        elif isinstance(v, int):
            if not _INT_MIN <= v <= _INT_MAX:
                return path, f"an int of {v.bit_length()} bits (beyond 64 bits)"
        elif isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                return path, f"a str with a lone surrogate {v[exc.start]!r} at index {exc.start}"
        elif id(v) in seen:
            continue
        elif isinstance(v, dict):
            seen.add(id(v))
            for key, item in v.items():
                stack.append((item, f"{path}[{key!r}]"))
                if isinstance(key, str):  # other keys become strings, whatever their value
                    stack.append((key, f"{path} key {key!r}"))
        elif isinstance(v, (list, tuple, set, frozenset)):
            seen.add(id(v))
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(v))
        else:
            seen.add(id(v))
            try:
                stack.append((_default(v), path))
            except Exception:  # noqa: BLE001 - json.dumps reports that one itself
                pass
    return None


def _refuse(msg):
    found = _unsendable(msg.get("value"), "the " + str(msg.get("type")))
    if found is None:
        return None
    path, what = found
    return UnsendableValue(f"{path} is {what}, which JSON cannot carry; convert it first")


def _encode(msg):
    try:
        text = json.dumps(
            msg, default=_default, separators=(",", ":"), allow_nan=False, ensure_ascii=False
        )
        data = text.encode("utf-8")  # a lone surrogate fails here
    except ValueError:
        refused = _refuse(msg)
        if refused is not None:
            raise refused from None
        raise
    if _LONG_INT.search(text):
        refused = _refuse(msg)
        if refused is not None:
            raise refused
    return data + b"\n"


def _send(msg):
    # Only the event loop thread writes, so lines never interleave.
    _proto.write(_encode(msg))


def _text(value):
    """Any str as valid UTF-8: lone surrogates become backslash escapes."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(rid, exc):
    kind = type(exc)
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the error
        message = object.__repr__(exc)
    try:
        trace = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
    except Exception:  # noqa: BLE001
        trace = ""
    return {
        "id": rid,
        "type": "error",
        "error": {
            "type": _text(
                kind.__module__ + "." + kind.__qualname__
                if kind.__module__ not in ("builtins", "__main__")
                else kind.__qualname__
            ),
            "message": _text(message),
            "traceback": _text(trace),
        },
    }


def _resolve(dotted):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    import builtins

    obj = builtins
    for attr in parts:
        obj = getattr(obj, attr)
    return obj


_LOOP = None


def _exec(code, inp):
    namespace = {"__name__": "__pythonexec__", "input": inp, "result": None, "loop": _LOOP}
    exec(compile(code, "<pythonexec>", "exec"), namespace)
    return namespace.get("result")


def _eval(expr, inp):
    return eval(compile(expr, "<pythonexec>", "eval"), {"__name__": "__pythonexec__", "input": inp, "loop": _LOOP})


async def _maybe_await(value):
    # Not asyncio.iscoroutine: on 3.11 it also says yes to plain generators.
    if inspect.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


async def _completion(rid, params):
    import litellm

    params = dict(params)
    if params.get("stream"):
        response = await litellm.acompletion(**params)
        async for chunk in response:
            _send({"id": rid, "type": "chunk", "value": chunk})
        return None
    return await litellm.acompletion(**params)


_END = object()


def _next(it):
    return next(it, _END)


async def _stream(rid, value):
    """Send the items of a generator as chunks; anything else is returned as it is."""
    if inspect.isasyncgen(value):
        async for item in value:
            _send({"id": rid, "type": "chunk", "value": item})
        return None
    if inspect.isgenerator(value):
        loop = asyncio.get_running_loop()
        while True:
            item = await loop.run_in_executor(_executor, _next, value)
            if item is _END:
                return None
            _send({"id": rid, "type": "chunk", "value": item})
    return value


async def _handle(req):
    rid = req.get("id")
    op = req.get("op")
    loop = asyncio.get_running_loop()
    try:
        if op == "ping":
            value = None
        elif op == "exec":
            value = await loop.run_in_executor(_executor, _exec, req["code"], req.get("input"))
        elif op == "eval":
            value = await _maybe_await(
                await loop.run_in_executor(_executor, _eval, req["expr"], req.get("input"))
            )
        elif op == "call":
            fn = _resolve(req["function"])
            args = req.get("args") or []
            kwargs = req.get("kwargs") or {}
            if asyncio.iscoroutinefunction(fn):
                value = await fn(*args, **kwargs)
            else:
                value = await _maybe_await(
                    await loop.run_in_executor(_executor, lambda: fn(*args, **kwargs))
                )
        elif op == "completion":
            value = await _completion(rid, req["params"])
        else:
            raise ValueError(f"unknown op {op!r}")
        if op in ("eval", "call"):
            value = await _stream(rid, value)
        line = {"id": rid, "type": "result", "value": value}
        try:
            _send(line)
        except (TypeError, ValueError) as exc:
            _send(_error(rid, exc))
    except asyncio.CancelledError:
        _send({"id": rid, "type": "cancelled"})
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
        try:
            _send(_error(rid, exc))
        except Exception:  # noqa: BLE001 - the request must still get an answer
            _send(_error(rid, RuntimeError("the error could not be encoded")))
    finally:
        _tasks.pop(rid, None)


def _dispatch(line, loop, stop):
    try:
        req = json.loads(line)
        if not isinstance(req, dict):
            raise ValueError(f"not an object: {type(req).__name__}")
    except ValueError as exc:
        _send({"id": None, "type": "protocol_error", "message": _text(f"bad request line: {exc}")})
        return
    op = req.get("op")
    if op == "cancel":
        task = _tasks.get(req.get("target"))
        if task is not None:
            task.cancel()
        return
    if op == "shutdown":
        stop.set()
        return
    rid = req.get("id")
    _tasks[rid] = loop.create_task(_handle(req))


def _reader(loop, queue):
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        if line.strip():
            loop.call_soon_threadsafe(queue.put_nowait, line)
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def _main():
    global _LOOP
    started = time.time()
    loop = asyncio.get_running_loop()
    _LOOP = loop
    preload = [m for m in os.environ.get("PYTHONEXEC_PRELOAD", "").split(",") if m]
    for module in preload:
        try:
            importlib.import_module(module)
        except BaseException as exc:  # noqa: BLE001 - reported, the worker stays usable
            print(f"pythonexec: preloading {module} failed: {exc!r}", file=sys.stderr)
    _send(
        {
            "id": None,
            "type": "ready",
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "executable": _text(sys.executable or ""),
            "preload_seconds": time.time() - started,
        }
    )
    queue = asyncio.Queue()
    stop = asyncio.Event()
    threading.Thread(target=_reader, args=(loop, queue), daemon=True).start()
    stop_wait = loop.create_task(stop.wait())
    while True:
        get = loop.create_task(queue.get())
        done, _ = await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if get not in done:
            get.cancel()
            break
        line = get.result()
        if line is None:
            break
        _dispatch(line, loop, stop)
    # Graceful: let requests already in flight finish, then go.
    pending = list(_tasks.values())
    if pending:
        await asyncio.wait(pending, timeout=float(os.environ.get("PYTHONEXEC_DRAIN_SECONDS", "5")))
    _executor.shutdown(wait=False, cancel_futures=True)


asyncio.run(_main())
_proto.flush()
os._exit(0)

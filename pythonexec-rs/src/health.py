# Health check of the interpreter pythonexec runs. Prints one JSON object on its last line.
import json
import os
import platform
import sys
import time

started = time.time()

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PACKAGES = [
    "litellm",
    "openai",
    "httpx",
    "pydantic",
    "pydantic_core",
    "tiktoken",
    "tokenizers",
    "aiohttp",
    "jinja2",
    "jsonschema",
    "python-dotenv",
    "tenacity",
    "click",
    "importlib-metadata",
]


def site_packages():
    found = []
    for entry in sys.path:
        base = os.path.basename(entry.rstrip("/"))
        if "site-packages" not in base and "dist-packages" not in base:
            continue
        if os.path.isdir(entry):
            kind = "directory"
        elif os.path.isfile(entry):
            kind = "zip"
        else:
            kind = "missing"
        found.append({"path": entry, "kind": kind})
    return found


def versions():
    from importlib import metadata

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
        except Exception:  # noqa: BLE001 - a broken dist-info is reported as absent
            out[name] = None
    return out


report = {
    "started_at": started,
    "executable": sys.executable,
    "version": platform.python_version(),
    "implementation": platform.python_implementation(),
    "machine": platform.machine(),
    "platform": sys.platform,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "sys_path": sys.path,
    "site_packages": site_packages(),
    "packages": versions(),
}

t0 = time.perf_counter()
try:
    import litellm  # noqa: F401

    report["import_litellm_seconds"] = time.perf_counter() - t0
    report["import_litellm_error"] = None
except BaseException as exc:  # noqa: BLE001 - the report says why
    report["import_litellm_seconds"] = None
    report["import_litellm_error"] = f"{type(exc).__name__}: {exc}"

sys.stdout.write("\n" + json.dumps(report) + "\n")
sys.stdout.flush()

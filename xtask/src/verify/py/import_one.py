# Package check: import one top-level module (argv[1]) in a fresh interpreter.
import importlib

_name = _vsys.argv[1]
try:
    importlib.import_module(_name)
    _report({"ok": True, "error": None})
except BaseException as e:  # noqa: BLE001 - SystemExit at import is a finding too
    _report({"ok": False, "error": _error(e)})

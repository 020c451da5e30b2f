# Package check: importlib.metadata answers for every distribution named in argv[1:].
import importlib.metadata

out = {"versions": {}}
for _name in _vsys.argv[1:]:
    try:
        out["versions"][_name] = {"ok": True, "version": importlib.metadata.version(_name)}
    except BaseException as e:  # noqa: BLE001
        out["versions"][_name] = {"ok": False, "version": None, "error": _error(e)}
_report(out)

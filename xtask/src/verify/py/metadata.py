# Package check: importlib.metadata answers for every distribution named in argv[1:].
import importlib.metadata

out = {"versions": {}}
for _name in _vsys.argv[1:]:
    try:
        _v = importlib.metadata.version(_name)
        if not _v:
            # A `.dist-info` folder without its METADATA: found, but it answers nothing.
            _where = getattr(importlib.metadata.distribution(_name), "_path", "?")
            raise importlib.metadata.PackageNotFoundError(f"{_name}: {_where} has no METADATA (no version)")
        out["versions"][_name] = {"ok": True, "version": _v}
    except BaseException as e:  # noqa: BLE001
        out["versions"][_name] = {"ok": False, "version": None, "error": _error(e)}
_report(out)

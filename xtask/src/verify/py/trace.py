# Prepended (after audit.py) to the workload scripts `cargo xtask layer --minimize` runs. An
# audit hook records what the layer's code touches: every file opened (any mode), every folder
# listed (importlib's path finders list folders; namespace packages live in them) and every
# module imported. `_report` adds, at the end, every `__file__`/`__path__` of sys.modules and the
# shared libraries mapped into the process (extension modules and the `.libs/` libraries of
# wheels are loaded by dlopen, which raises no `open` event).
def _trace_setup():
    import os

    opened = set()
    listed = set()
    imported = set()

    def norm(path):
        if isinstance(path, int) or path is None:
            return None
        try:
            path = os.fsdecode(path)
        except Exception:
            return None
        if not path.startswith("/"):
            try:
                path = os.path.join(os.getcwd(), path)
            except OSError:
                return None
        return os.path.normpath(path)

    def hook(event, args):
        try:
            if event == "open":
                p = norm(args[0] if args else None)
                if p:
                    opened.add(p)
            elif event in ("os.listdir", "os.scandir"):
                p = norm(args[0] if args else ".")
                if p:
                    listed.add(p)
            elif event == "import":
                if args and isinstance(args[0], str):
                    imported.add(args[0])
            elif event == "ctypes.dlopen":
                p = norm(args[0] if args else None)
                if p:
                    opened.add(p)
        except Exception:
            # A hook that raises would break the workload, not record it.
            pass

    _vsys.addaudithook(hook)

    # OpenSSL reads CA bundles itself (certifi's cacert.pem, through httpx): no audit event,
    # so the paths handed to it are recorded here.
    try:
        import ssl

        _load = ssl.SSLContext.load_verify_locations

        def load_verify_locations(self, cafile=None, capath=None, cadata=None):
            for p in (cafile, capath):
                p = norm(p)
                if p:
                    opened.add(p)
            return _load(self, cafile, capath, cadata)

        ssl.SSLContext.load_verify_locations = load_verify_locations
    except Exception:
        pass

    def collect():
        files = set(opened)
        for name, module in list(_vsys.modules.items()):
            # A namespace package's __path__ recomputes itself from its parent, which a
            # workload may have taken out of sys.modules: one odd module must not lose the trace.
            try:
                f = getattr(module, "__file__", None)
                if isinstance(f, str):
                    files.add(os.path.normpath(f))
                for p in list(getattr(module, "__path__", None) or []):
                    if isinstance(p, str):
                        listed.add(os.path.normpath(p))
            except Exception:
                pass
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    parts = line.split(None, 5)
                    if len(parts) == 6 and parts[5].startswith("/"):
                        files.add(parts[5].strip())
        except OSError:
            pass
        return {
            "files": sorted(files),
            "dirs": sorted(listed),
            "modules": sorted(set(_vsys.modules) | imported),
        }

    return collect


_trace_collect = _trace_setup()


def _run_workload(name, source):
    import os

    result = {"workload": name}
    try:
        code = compile(source, name, "exec")
        exec(code, {"__name__": "__main__", "__file__": name})
        result["ok"] = True
    except BaseException as e:  # noqa: BLE001 - the failure is the result
        import traceback

        result["ok"] = False
        # The whole chain of frames: a workload fails deep inside a library, and which code
        # path led there is what tells a user what to keep.
        frames = traceback.extract_tb(e.__traceback__)
        where = " <- ".join(f"{f.filename}:{f.lineno}" for f in reversed(frames[-8:]))
        result["error"] = f"{type(e).__name__}: {e} (at {where})"
    _report(result)


# Scripts that report through `_report` themselves (verify's runtime checks) are traced too.
_untraced_report = _report


def _report(result):
    result.setdefault("trace", _trace_collect())
    _untraced_report(result)

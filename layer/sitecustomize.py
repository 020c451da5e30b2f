# Installed by `cargo xtask layer` into the layer's standard library folder; Python runs it at start-up.
# It sets the spec's environment defaults ([env] in layer.toml) unless the caller already set them,
# and puts site-packages.zip (written by profiles with `site-packages-zip = true`) on sys.path.
import os as _os
import sys as _sys

_key = _value = None  # so that the `del` below works when [env] is empty
for _key, _value in __LAYER_ENV__.items():
    _os.environ.setdefault(_key, _value)

# Beside this file, after site-packages: the distributions kept out of the zip stay importable
# from the folder, the rest come from the zip.
_zip = _os.path.join(_os.path.dirname(__file__), "site-packages.zip")
if _os.path.isfile(_zip) and _zip not in _sys.path:
    _sys.path.append(_zip)

# A layer built with `cargo xtask layer --minimize` lists in its manifest the modules the trace
# never touched and minimization removed. This finder comes last on sys.meta_path, so it sees only
# imports nothing else could satisfy, and turns those of removed modules into an error that says
# why and how to keep them. It reads the manifest on first use only: start-up pays nothing.
class _RemovedByMinimization:
    _removed = None
    # python/layer-manifest.json; the path is taken now, because the module's names are
    # deleted below.
    _manifest = _os.path.join(
        _os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))),
        "layer-manifest.json",
    )

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if cls._removed is None:
            cls._removed = {}
            try:
                import json

                with open(cls._manifest, encoding="utf-8") as f:
                    for entry in json.load(f).get("removed_modules", []):
                        cls._removed[entry["module"]] = entry["hint"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
        probe = name
        while probe:
            hint = cls._removed.get(probe)
            if hint is not None:
                raise ModuleNotFoundError(
                    f"{name} was removed from this layer by minimization "
                    f"(cargo xtask layer --minimize); to keep it {hint}",
                    name=name,
                )
            probe = probe.rpartition(".")[0]
        return None


_sys.meta_path.append(_RemovedByMinimization)

del _os, _sys, _key, _value, _zip

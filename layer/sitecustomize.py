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

# Packages that stay unpacked (native code, data opened by path) while their plain modules went
# into site-packages.zip (split-modules in layer/rules.toml): site-packages-split.txt lists them,
# and this finder, first on sys.meta_path, gives each its folder inside the zip as a second
# __path__ entry after the unpacked one. Everything else about the package is as pip left it.
# Other imports pay one set lookup.
_split = _os.path.join(_os.path.dirname(__file__), "site-packages-split.txt")
if _os.path.isfile(_split):
    with open(_split, encoding="utf-8") as _f:
        _packages = frozenset(
            _line.strip() for _line in _f if _line.strip() and not _line.startswith("#")
        )

    class _SplitPackages:
        _packages = _packages
        _zip = _zip
        _path_finder = next(f for f in _sys.meta_path if getattr(f, "__name__", "") == "PathFinder")

        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name not in cls._packages:
                return None
            spec = cls._path_finder.find_spec(name, path, target)
            locations = None if spec is None else spec.submodule_search_locations
            if locations is not None:
                inside = cls._zip + "/" + name.replace(".", "/")
                if inside not in locations:
                    locations.append(inside)
            return spec

    _sys.meta_path.insert(0, _SplitPackages)
    del _f, _packages

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

del _os, _sys, _key, _value, _zip, _split

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

del _os, _sys, _key, _value, _zip

# Installed by `cargo xtask layer` into the layer's standard library folder; Python runs it at start-up.
# It sets the spec's environment defaults ([env] in layer.toml) unless the caller already set them.
import os as _os

for _key, _value in __LAYER_ENV__.items():
    _os.environ.setdefault(_key, _value)

del _os, _key, _value

# Runtime check: the interpreter starts; the standard-library modules real code needs import
# and do one small thing each; ssl finds a CA bundle with certificates in it.
import json as _json
import platform

out = {
    "version": platform.python_version(),
    "machine": platform.machine(),
    "prefix": _vsys.prefix,
    "executable": _vsys.executable,
    "modules": {},
}


def _ssl():
    import ssl

    paths = ssl.get_default_verify_paths()
    ctx = ssl.create_default_context()
    count = ctx.cert_store_stats()["x509_ca"]
    where = f"default store {paths.cafile or paths.capath}"
    if count == 0:
        try:
            import certifi

            ctx = ssl.create_default_context(cafile=certifi.where())
            count = ctx.cert_store_stats()["x509_ca"]
            where = f"certifi {certifi.where()}"
        except ImportError:
            pass
    if count == 0:
        raise RuntimeError(f"no CA certificates: default cafile {paths.cafile}, capath {paths.capath}, no certifi")
    return f"{ssl.OPENSSL_VERSION}, {count} CA certificates from {where}"


def _json_check():
    assert _json.loads(_json.dumps({"a": [1, 2.5, None]})) == {"a": [1, 2.5, None]}


def _asyncio():
    import asyncio

    async def two():
        await asyncio.sleep(0)
        return 2

    assert asyncio.run(two()) == 2


def _ctypes():
    import ctypes

    libc = ctypes.CDLL(None)
    assert libc.strlen(b"abc") == 3


def _zlib():
    import zlib

    assert zlib.decompress(zlib.compress(b"x" * 100)) == b"x" * 100


def _hashlib():
    import hashlib

    assert hashlib.sha256(b"").hexdigest().startswith("e3b0c442")
    hashlib.md5(b"", usedforsecurity=False)


def _sqlite3():
    import sqlite3

    con = sqlite3.connect(":memory:")
    assert con.execute("select 1 + 1").fetchone() == (2,)
    return sqlite3.sqlite_version


def _decimal():
    import decimal

    assert decimal.Decimal("0.1") + decimal.Decimal("0.2") == decimal.Decimal("0.3")


def _uuid():
    import uuid

    assert uuid.uuid4().version == 4


def _idna():
    import encodings.idna  # noqa: F401

    assert "bücher.example".encode("idna") == b"xn--bcher-kva.example"


checks = {
    "ssl": _ssl,
    "json": _json_check,
    "asyncio": _asyncio,
    "ctypes": _ctypes,
    "zlib": _zlib,
    "hashlib": _hashlib,
    "sqlite3": _sqlite3,
    "decimal": _decimal,
    "uuid": _uuid,
    "encodings.idna": _idna,
}
for name, check in checks.items():
    try:
        detail = check()
        out["modules"][name] = {"ok": True, "detail": detail or ""}
    except BaseException as e:  # noqa: BLE001 - every failure is a finding
        out["modules"][name] = {"ok": False, "detail": _error(e)}
_report(out)

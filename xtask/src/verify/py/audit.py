# Prepended to every check script that `cargo xtask verify` runs in the layer's interpreter.
# An audit hook records every connection or name lookup that leaves loopback and every file
# opened for writing outside /tmp; `_report` prints them with the check's own result as one
# JSON line that starts with a marker, so that noise a package prints cannot be mistaken for it.
import sys as _vsys


def _verify_setup():
    import os

    egress = []
    writes = []
    loopback_names = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    # Bytecode the import system tries to cache next to read-only sources is not a package
    # writing: Lambda's /opt rejects it silently and CPython carries on.
    allowed_prefixes = ("/tmp/", "/dev/null", "/dev/tty")

    def is_loopback(host):
        if not isinstance(host, str):
            return True
        h = host.lower().strip("[]")
        return (
            h in loopback_names
            or h.startswith("127.")
            or h in ("::1", "0:0:0:0:0:0:0:1", "")
            or h.startswith("::ffff:127.")
        )

    def note_write(path, what):
        if isinstance(path, int) or path is None:
            return
        try:
            path = os.fsdecode(path)
        except Exception:
            return
        if not path.startswith("/"):
            path = os.path.join(os.getcwd(), path)
        path = os.path.normpath(path)
        if "/__pycache__/" in path + "/" or path.endswith(".pyc") and "__pycache__" in path:
            return
        if path == "/tmp" or path.startswith(allowed_prefixes):
            return
        entry = f"{what} {path}"
        if entry not in writes:
            writes.append(entry)

    def hook(event, args):
        try:
            if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
                addr = args[1] if len(args) > 1 else None
                if isinstance(addr, tuple) and addr and not is_loopback(addr[0]):
                    entry = f"connect {addr[0]}:{addr[1] if len(addr) > 1 else '?'}"
                    if entry not in egress:
                        egress.append(entry)
            elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
                host = args[0] if args else None
                if isinstance(host, bytes):
                    host = host.decode("ascii", "replace")
                if host and not is_loopback(host):
                    try:
                        import ipaddress

                        if ipaddress.ip_address(host).is_loopback:
                            return
                    except ValueError:
                        pass
                    entry = f"resolve {host}"
                    if entry not in egress:
                        egress.append(entry)
            elif event == "open":
                path, mode, flags = (list(args) + [None, None, None])[:3]
                writing = isinstance(flags, int) and flags & write_flags
                if not writing and isinstance(mode, str):
                    writing = any(c in mode for c in "wax+")
                if writing:
                    note_write(path, "open")
            elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.utime"):
                note_write(args[0] if args else None, event[3:])
            elif event in ("os.rename", "os.link", "os.symlink"):
                if len(args) > 1:
                    note_write(args[1], event[3:])
                    if event == "os.rename":
                        note_write(args[0], event[3:])
        except Exception:
            # A hook that raises would break the code under test, not report on it.
            pass

    _vsys.addaudithook(hook)
    return egress, writes


_verify_egress, _verify_writes = _verify_setup()


def _report(result):
    import json
    import os

    result["egress"] = list(_verify_egress)
    result["writes"] = list(_verify_writes)
    _vsys.stdout.flush()
    _vsys.stdout.write("\n@@verify-result@@" + json.dumps(result) + "\n")
    _vsys.stdout.flush()
    # Threads a package started must not keep the process alive, nor atexit handlers hide
    # the result: the report is written, so leave now.
    os._exit(0)


def _error(exc):
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"

# LiteLLM checks against the loopback server at argv[1] (ends with /v1): a plain, a streamed
# and an async completion, and the model list, through the real HTTP stack. Timings of this
# fresh process are reported too: `import litellm` and the first completion.
import time

_t0 = time.perf_counter()
_base = _vsys.argv[1]
_args = dict(model="openai/gpt-4o-mini", api_base=_base, api_key="sk-verify", timeout=60)
_messages = [{"role": "user", "content": "ping"}]
out = {}


def _step(name, fn):
    try:
        out[name] = {"ok": True, "value": fn()}
    except BaseException as e:  # noqa: BLE001 - one failure must not hide the others
        out[name] = {"ok": False, "error": _error(e)}


_step("import", lambda: __import__("litellm") and "")
out["import_s"] = time.perf_counter() - _t0


def _completion():
    import litellm

    r = litellm.completion(messages=_messages, **_args)
    return r.choices[0].message.content


_t1 = time.perf_counter()
_step("completion", _completion)
out["completion_s"] = time.perf_counter() - _t1


def _stream():
    import litellm

    parts = []
    for chunk in litellm.completion(messages=_messages, stream=True, **_args):
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            parts.append(delta)
    return {"text": "".join(parts), "chunks": len(parts)}


def _acompletion():
    import asyncio

    import litellm

    async def call():
        r = await litellm.acompletion(messages=_messages, **_args)
        return r.choices[0].message.content

    return asyncio.run(call())


def _models():
    import openai

    client = openai.OpenAI(base_url=_base, api_key="sk-verify")
    return [m.id for m in client.models.list().data]


if "--timing" not in _vsys.argv:
    _step("stream", _stream)
    _step("acompletion", _acompletion)
    _step("models", _models)
_report(out)

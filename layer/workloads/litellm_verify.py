# The spec's [verify] workload: LiteLLM against `cargo xtask verify`'s loopback server. A plain,
# a streamed and an async completion and the model list, through the real HTTP stack; each is a
# check of its own, so one failure cannot hide another. `check`, `timed`, `expect_requests`,
# MOCK_BASE, MOCK_REPLY and TIMING come from verify (xtask/src/verify/py/workload.py).
_args = dict(model="openai/gpt-4o-mini", api_base=MOCK_BASE, api_key="sk-verify", timeout=60)
_messages = [{"role": "user", "content": "ping"}]


def _same_text(got, extra=""):
    if not isinstance(got, str) or not got:
        raise AssertionError("no text in the answer")
    if got != MOCK_REPLY:
        raise AssertionError(f"got {got!r}, the server sent {MOCK_REPLY!r}")
    return f"got the server's {len(MOCK_REPLY)} characters{extra}"


def _import():
    import sys
    import time

    if "litellm" in sys.modules:
        # verify imported the spec's preload first (this run doubles as a timing run).
        return "imported by the preload (its time is verify's import timing)"
    t0 = time.perf_counter()
    import litellm  # noqa: F401

    return f"{time.perf_counter() - t0:.2f} s"


def _completion():
    import litellm

    r = timed(lambda: litellm.completion(messages=_messages, **_args))
    return _same_text(r.choices[0].message.content)


def _stream():
    import litellm

    parts = []
    for chunk in litellm.completion(messages=_messages, stream=True, **_args):
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            parts.append(delta)
    return _same_text("".join(parts), f" in {len(parts)} chunks")


def _acompletion():
    import asyncio

    import litellm

    async def call():
        r = await litellm.acompletion(messages=_messages, **_args)
        return r.choices[0].message.content

    return _same_text(asyncio.run(call()))


def _models():
    # The OpenAI SDK's own client: a different HTTP stack from litellm's.
    import openai

    client = openai.OpenAI(base_url=MOCK_BASE, api_key="sk-verify")
    models = [m.id for m in client.models.list().data]
    if "gpt-4o-mini" not in models:
        raise AssertionError(f"listed {models!r}")
    return f"listed {', '.join(models)}"


def _guardrail_translations():
    # litellm >= 1.100 discovers these by walking its own folder for `__init__.py` files, which a
    # sourceless layer must keep (layer/rules.toml [sources] keep).
    import litellm.llms

    load = getattr(litellm.llms, "load_guardrail_translation_mappings", None)
    if load is None:
        return "this litellm has no guardrail translation discovery"
    import os

    root = os.path.dirname(litellm.llms.__file__)
    folders = [d for d, _, _ in os.walk(root) if os.path.basename(d) == "guardrail_translation"]
    if not folders:
        return "no guardrail_translation folder in this layer (minimized away)"
    mappings = load()
    if not mappings:
        raise AssertionError(
            f"found no guardrail translation handler in {len(folders)} guardrail_translation "
            "folders under litellm/llms/ (their __init__.py sources are missing?)"
        )
    return f"{len(mappings)} call types from {len(folders)} folders"


check("litellm: import", _import)
check("litellm: completion", _completion)
if not TIMING:
    check("litellm: streamed completion", _stream)
    check("litellm: acompletion", _acompletion)
    check("litellm: /v1/models", _models)
    check("litellm: guardrail translations", _guardrail_translations)
    # The library server counts the three completions; /v1/models may not count.
    expect_requests("litellm: through the loopback server", 3, "the 3 completions")

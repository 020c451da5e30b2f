# The default workload of `cargo xtask layer --minimize`: import litellm, then a plain, a
# streamed and an async completion through every provider of the spec's [minimize] providers,
# against the local OpenAI-compatible server (LAYER_MOCK_BASE, ends with /v1). Whatever this
# touches is kept; whatever only other code paths need is removed. Add your own scripts with
# [minimize] workloads = ["my_handler_paths.py"]: they run the same way, in the sandbox, with
# the same environment, and any exception fails the build.
import asyncio
import os

import litellm

BASE = os.environ["LAYER_MOCK_BASE"]
PROVIDERS = [p for p in os.environ.get("LAYER_PROVIDERS", "openai").split(",") if p]
MESSAGES = [{"role": "user", "content": "ping"}]


def call_args(provider):
    if provider == "openai":
        return dict(model="openai/gpt-4o-mini", api_base=BASE, api_key="sk-trace")
    if provider == "azure":
        # LiteLLM's Azure client posts to <api_base>/openai/deployments/<name>/chat/completions.
        return dict(
            model="azure/gpt-4o-mini",
            api_base=BASE[: -len("/v1")],
            api_version="2024-10-21",
            api_key="sk-trace",
        )
    if provider == "gemini":
        # Google AI Studio: <api_base>/models/<model>:generateContent (streamGenerateContent).
        return dict(model="gemini/gemini-1.5-flash", api_base=BASE, api_key="sk-trace")
    raise RuntimeError(
        f"no local stand-in for provider {provider!r} yet: the loopback server speaks the "
        "OpenAI, Azure OpenAI and Gemini formats only; trace it with your own workload script "
        "against your own stand-in, or keep its files with [minimize] keep"
    )


def check(text, how):
    if not isinstance(text, str) or not text:
        raise AssertionError(f"{how}: no text in the answer: {text!r}")


for provider in PROVIDERS:
    args = call_args(provider)
    r = litellm.completion(messages=MESSAGES, timeout=60, **args)
    check(r.choices[0].message.content, f"{provider}: completion")

    parts = []
    for chunk in litellm.completion(messages=MESSAGES, stream=True, timeout=60, **args):
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            parts.append(delta)
    check("".join(parts), f"{provider}: streamed completion")

    async def acall():
        r = await litellm.acompletion(messages=MESSAGES, timeout=60, **args)
        return r.choices[0].message.content

    check(asyncio.run(acall()), f"{provider}: acompletion")

if "openai" in PROVIDERS:
    # `cargo xtask verify` lists the models through the OpenAI SDK's own client (a different
    # HTTP stack from litellm's), so the minimized layer must keep what that needs.
    import openai

    models = [m.id for m in openai.OpenAI(base_url=BASE, api_key="sk-trace").models.list().data]
    if not models:
        raise AssertionError("openai: /v1/models listed nothing")

# Native accelerators left out ([minimize] drop-accelerators) come with their packages'
# *_NO_EXTENSIONS variables set by sitecustomize.py: each package must still import and work on
# its pure-Python path (aiohttp also carried the async completion above, as litellm's transport).
for var, module in [
    ("AIOHTTP_NO_EXTENSIONS", "aiohttp"),
    ("YARL_NO_EXTENSIONS", "yarl"),
    ("MULTIDICT_NO_EXTENSIONS", "multidict"),
    ("FROZENLIST_NO_EXTENSIONS", "frozenlist"),
    ("PROPCACHE_NO_EXTENSIONS", "propcache"),
]:
    if os.environ.get(var):
        __import__(module)
if os.environ.get("MULTIDICT_NO_EXTENSIONS"):
    import multidict

    d = multidict.CIMultiDict(a="1")
    assert d["A"] == "1", "multidict's Python CIMultiDict"
if os.environ.get("YARL_NO_EXTENSIONS"):
    import yarl

    assert str(yarl.URL("http://h/a b")) == "http://h/a%20b", "yarl's Python quoting"

"""labelsync_chatbot/providers.py against the Ollama stub, through the real `ollama` client."""

from __future__ import annotations

import asyncio
import socket

import pytest

from labelsync_chatbot.providers import (
    ModelChoice,
    ModelNotFound,
    OllamaProvider,
    ProviderUnavailable,
    ReplyInterrupted,
    available_models,
    build_providers,
    ollama_model_name,
    parse_model_key,
)
from labelsync_chatbot.settings import ChatbotSettings

HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "what is a label"},
]


async def collect(provider: OllamaProvider, model: str) -> list[str]:
    return [piece async for piece in provider.stream(model, HISTORY)]


def collect_until_error(provider: OllamaProvider, model: str) -> tuple[list[str], Exception]:
    pieces: list[str] = []

    async def run() -> None:
        async for piece in provider.stream(model, HISTORY):
            pieces.append(piece)

    with pytest.raises(Exception) as caught:
        asyncio.run(run())
    return pieces, caught.value


def free_port_with_nothing_listening() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reply_streams_in_pieces_and_sends_the_whole_history(ollama_stub):
    provider = OllamaProvider(ollama_stub.host)
    pieces = asyncio.run(collect(provider, "stub-llama:latest"))
    assert len(pieces) > 1
    assert "".join(pieces) == "You said: what is a label"
    assert ollama_stub.chat_requests[-1]["messages"] == HISTORY
    assert ollama_stub.chat_requests[-1]["stream"] is True


def test_lists_what_ollama_really_has(ollama_stub):
    models = asyncio.run(OllamaProvider(ollama_stub.host).list_models())
    assert models == ["stub-llama:latest", "tiny:1b"]


OPERATOR_WORDS = ("ollama ", "OLLAMA_HOST", "127.0.0.1", "http", "LABELSYNC_")


def assert_words_for_the_chat_user(text: str) -> None:
    """What the chat shows: no host, command or setting name (those go to the log)."""
    assert not [word for word in OPERATOR_WORDS if word in text], text


def test_unknown_model_says_how_to_get_it(ollama_stub):
    pieces, error = collect_until_error(OllamaProvider(ollama_stub.host), "llama9:70b")
    assert pieces == []
    assert isinstance(error, ModelNotFound)
    assert "ollama pull llama9:70b" in str(error)  # the operator's log line
    assert "`llama9:70b` is not available" in error.for_user
    assert "Pick another one in the chat settings" in error.for_user
    assert_words_for_the_chat_user(error.for_user)


def test_server_down_tells_the_operator_how_to_start_it_and_the_user_to_wait():
    host = f"http://127.0.0.1:{free_port_with_nothing_listening()}"
    provider = OllamaProvider(host)
    pieces, error = collect_until_error(provider, "stub-llama:latest")
    assert pieces == []
    assert isinstance(error, ProviderUnavailable)
    assert host in str(error) and "ollama serve" in str(error)
    assert error.for_user == "The assistant is unavailable right now. Please try again in a minute."
    with pytest.raises(ProviderUnavailable):
        asyncio.run(provider.list_models())


@pytest.mark.parametrize("mode", ["error", "drop"])
def test_failure_mid_stream_is_an_interrupted_reply(ollama_stub, mode):
    ollama_stub.fail_after(2, mode)
    pieces, error = collect_until_error(OllamaProvider(ollama_stub.host), "stub-llama:latest")
    assert "".join(pieces) == "You said:"
    assert isinstance(error, ReplyInterrupted)
    assert error.started
    if mode == "error":
        assert "llama runner process has terminated" in str(error)
    assert "Send your message again" in error.for_user
    assert_words_for_the_chat_user(error.for_user)
    # The server is fine afterwards: the next reply is whole.
    pieces = asyncio.run(collect(OllamaProvider(ollama_stub.host), "stub-llama:latest"))
    assert "".join(pieces) == "You said: what is a label"


def test_model_menu_combines_ollama_and_configured_cloud_models(ollama_stub):
    settings = ChatbotSettings(
        ollama_host=ollama_stub.host,
        openai_api_key="sk-real-looking",
        openai_models="gpt-4o-mini, gpt-4o",
        anthropic_api_key="",
        default_model="ollama:tiny:1b",
    )
    providers = build_providers(settings)
    assert set(providers) == {"ollama", "openai"}
    menu = asyncio.run(available_models(providers, settings.default_model))
    assert [c.key for c in menu.choices] == [
        "ollama:stub-llama:latest", "ollama:tiny:1b", "openai:gpt-4o-mini", "openai:gpt-4o",
    ]
    assert menu.problems == []


def test_chainlit_ci_placeholder_key_does_not_offer_openai(ollama_stub):
    settings = ChatbotSettings(
        ollama_host=ollama_stub.host, openai_api_key="sk-FAKE-OPENAI-API-KEY"
    )
    assert set(build_providers(settings)) == {"ollama"}


def test_model_menu_with_ollama_down_keeps_the_default_and_says_why():
    host = f"http://127.0.0.1:{free_port_with_nothing_listening()}"
    providers = build_providers(ChatbotSettings(ollama_host=host))
    menu = asyncio.run(available_models(providers, "ollama:llama3.2"))
    assert menu.choices == [ModelChoice("ollama", "llama3.2:latest")]
    (problem,) = menu.problems
    assert "ollama serve" in str(problem)
    assert_words_for_the_chat_user(problem.for_user)


def test_the_default_and_the_model_ollama_lists_are_one_entry(ollama_stub):
    """The default `ollama:llama3.2` is what Ollama lists as `llama3.2:latest`."""
    ollama_stub.models = ["llama3.2:latest", "tiny:1b"]
    providers = build_providers(ChatbotSettings(ollama_host=ollama_stub.host))
    menu = asyncio.run(available_models(providers, "ollama:llama3.2"))
    assert [c.label for c in menu.choices] == ["llama3.2:latest (ollama)", "tiny:1b (ollama)"]


@pytest.mark.parametrize(
    ("name", "as_ollama_lists_it"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:latest", "llama3.2:latest"),
        ("llama3.2:1b", "llama3.2:1b"),
        ("library/llama3.2", "library/llama3.2:latest"),
        ("hf.co/org/model:Q4_K_M", "hf.co/org/model:Q4_K_M"),
        ("registry:5000/org/model", "registry:5000/org/model:latest"),
    ],
)
def test_ollama_names(name, as_ollama_lists_it):
    assert ollama_model_name(name) == as_ollama_lists_it


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ollama:llama3.2:1b", ModelChoice("ollama", "llama3.2:1b")),
        ("llama3.2:1b", ModelChoice("ollama", "llama3.2:1b")),
        ("ollama:llama3.2", ModelChoice("ollama", "llama3.2:latest")),
        ("llama3.2", ModelChoice("ollama", "llama3.2:latest")),
        ("openai:gpt-4o", ModelChoice("openai", "gpt-4o")),
        ("anthropic:claude-3-5-haiku-latest", ModelChoice("anthropic", "claude-3-5-haiku-latest")),
    ],
)
def test_model_keys(key, expected):
    assert parse_model_key(key) == expected

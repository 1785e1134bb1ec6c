"""Model providers behind one streaming interface, and their failures in two voices.

Every provider's `stream()` yields text pieces and raises only `ProviderError`
subclasses. Each carries two texts: `for_user`, shown in the chat (what happened
and what the person chatting can do), and `str()`, the operator's hint for the
log (host, settings, the command that fixes it). The person chatting never sees
a path, a host or a setting name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
import ollama

from .settings import ChatbotSettings

OLLAMA_DEFAULT_HOST = "http://127.0.0.1:11434"


UNAVAILABLE_FOR_USER = "The assistant is unavailable right now. Please try again in a minute."


class ProviderError(Exception):
    """A reply could not be produced. str(): the operator's hint, for the log;
    `for_user`: what the chat shows."""

    for_user = UNAVAILABLE_FOR_USER


class ProviderUnavailable(ProviderError):
    """The provider cannot be reached at all."""


class ModelNotFound(ProviderError):
    """The provider is up but does not have the model."""

    def __init__(self, operator_hint: str, *, model: str) -> None:
        super().__init__(operator_hint)
        self.for_user = (
            f"The model `{model}` is not available here. Pick another one in the chat "
            "settings (the gear next to the message box), then send your message again."
        )


class ReplyInterrupted(ProviderError):
    """The provider failed after the reply had started (or refused it)."""

    def __init__(self, operator_hint: str, *, started: bool) -> None:
        super().__init__(operator_hint)
        self.started = started
        self.for_user = (
            "The reply stopped partway through, so it was not kept. "
            "Send your message again to get a whole reply."
            if started
            else "The assistant could not answer this time. Please send your message again."
        )


@dataclass(frozen=True)
class ModelChoice:
    provider: str
    model: str

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def label(self) -> str:
        return f"{self.model} ({self.provider})"


def ollama_model_name(name: str) -> str:
    """The name as Ollama lists it: "llama3.2" is "llama3.2:latest". The tag is
    what follows the last ':' after the last '/' ("host:port/ns/model" has none)."""
    name = name.strip()
    return name if ":" in name.rpartition("/")[2] else f"{name}:latest"


def parse_model_key(key: str) -> ModelChoice:
    """ "openai:gpt-4o" -> (openai, gpt-4o); a bare name is an Ollama model
    (Ollama names contain ':' themselves, as in "llama3.2:1b"). Ollama names come
    back as Ollama reports them, so one model is one key."""
    provider, sep, model = key.partition(":")
    if sep and provider in ("openai", "anthropic") and model:
        return ModelChoice(provider, model)
    if sep and provider == "ollama" and model:
        return ModelChoice("ollama", ollama_model_name(model))
    return ModelChoice("ollama", ollama_model_name(key))


class Provider(Protocol):
    name: str

    async def list_models(self) -> list[str]: ...

    def stream(self, model: str, messages: Sequence[dict[str, str]]) -> AsyncIterator[str]: ...


class OllamaProvider:
    name = "ollama"

    def __init__(self, host: str | None) -> None:
        self.host = host or OLLAMA_DEFAULT_HOST
        self._client = ollama.AsyncClient(host=self.host)

    def _unavailable(self) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"Ollama is not answering at {self.host}: start it with `ollama serve` "
            "(install it from https://ollama.com/download), or set OLLAMA_HOST to where it runs"
        )

    async def list_models(self) -> list[str]:
        try:
            listed = await self._client.list()
        except (ConnectionError, httpx.TransportError):
            raise self._unavailable() from None
        except ollama.ResponseError as exc:
            raise ProviderUnavailable(
                f"Ollama at {self.host} could not list models: {exc.error}"
            ) from None
        return [ollama_model_name(m.model) for m in listed.models if m.model]

    async def stream(self, model: str, messages: Sequence[dict[str, str]]) -> AsyncIterator[str]:
        started = False
        try:
            chunks = await self._client.chat(model=model, messages=list(messages), stream=True)
            async for chunk in chunks:
                text = chunk.message.content or ""
                if text:
                    started = True
                    yield text
        except ollama.ResponseError as exc:
            if exc.status_code == 404 and not started:
                raise ModelNotFound(
                    f"Ollama at {self.host} has no model `{model}`: run `ollama pull {model}`",
                    model=model,
                ) from None
            raise ReplyInterrupted(
                f"Ollama reported an error: {exc.error}", started=started
            ) from None
        except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout):
            # No server: ConnectionError from the client, httpx.ConnectError on the
            # first iteration of a stream (measured with ollama 0.6.3).
            if started:
                raise ReplyInterrupted("the connection to Ollama was lost", started=True) from None
            raise self._unavailable() from None
        except httpx.HTTPError as exc:
            raise ReplyInterrupted(
                f"the connection to Ollama broke ({type(exc).__name__})", started=started
            ) from None


class OpenAIProvider:
    name = "openai"

    def __init__(self, api_key: str, models: Sequence[str], base_url: str | None = None) -> None:
        import openai

        self._openai = openai
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url)
        self._models = list(models)

    async def list_models(self) -> list[str]:
        # The configured list, not the API's: it has hundreds of non-chat models.
        return list(self._models)

    async def stream(self, model: str, messages: Sequence[dict[str, str]]) -> AsyncIterator[str]:
        openai = self._openai
        started = False
        try:
            response = await self._client.chat.completions.create(
                model=model,
                messages=list(messages),  # type: ignore[arg-type]
                stream=True,
            )
            async for chunk in response:  # type: ignore[union-attr]
                text = chunk.choices[0].delta.content if chunk.choices else None
                if text:
                    started = True
                    yield text
        except openai.APIConnectionError:
            if started:
                raise ReplyInterrupted("the connection to OpenAI was lost", started=True) from None
            raise ProviderUnavailable(
                "OpenAI cannot be reached: check the network (and OPENAI_BASE_URL)"
            ) from None
        except openai.NotFoundError:
            raise ModelNotFound(
                f"OpenAI has no model `{model}` for this key: fix LABELSYNC_CHATBOT_OPENAI_MODELS",
                model=model,
            ) from None
        except openai.APIError as exc:
            raise ReplyInterrupted(
                f"OpenAI reported an error: {exc.message}", started=started
            ) from None


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, api_key: str, models: Sequence[str], max_tokens: int) -> None:
        import anthropic

        self._anthropic = anthropic
        self._client = anthropic.AsyncAnthropic(api_key=api_key)
        self._models = list(models)
        self._max_tokens = max_tokens

    async def list_models(self) -> list[str]:
        return list(self._models)

    async def stream(self, model: str, messages: Sequence[dict[str, str]]) -> AsyncIterator[str]:
        anthropic = self._anthropic
        # Anthropic takes the system prompt apart from the turns.
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        started = False
        try:
            async with self._client.messages.stream(
                model=model,
                max_tokens=self._max_tokens,
                system=system or anthropic.NOT_GIVEN,
                messages=turns,  # type: ignore[arg-type]
            ) as reply:
                async for text in reply.text_stream:
                    if text:
                        started = True
                        yield text
        except anthropic.APIConnectionError:
            if started:
                raise ReplyInterrupted(
                    "the connection to Anthropic was lost", started=True
                ) from None
            raise ProviderUnavailable("Anthropic cannot be reached: check the network") from None
        except anthropic.NotFoundError:
            raise ModelNotFound(
                f"Anthropic has no model `{model}`: fix LABELSYNC_CHATBOT_ANTHROPIC_MODELS",
                model=model,
            ) from None
        except anthropic.APIError as exc:
            raise ReplyInterrupted(
                f"Anthropic reported an error: {exc.message}", started=started
            ) from None


def build_providers(settings: ChatbotSettings) -> dict[str, Provider]:
    """Ollama always; a cloud provider only when its key is really configured
    (settings already discard Chainlit's CI placeholder key)."""
    providers: dict[str, Provider] = {"ollama": OllamaProvider(settings.ollama_host)}
    if settings.openai_api_key is not None and settings.openai_models:
        providers["openai"] = OpenAIProvider(
            settings.openai_api_key.get_secret_value(),
            settings.openai_models,
            settings.openai_base_url,
        )
    if settings.anthropic_api_key is not None and settings.anthropic_models:
        providers["anthropic"] = AnthropicProvider(
            settings.anthropic_api_key.get_secret_value(),
            settings.anthropic_models,
            settings.max_tokens,
        )
    return providers


@dataclass
class ModelMenu:
    choices: list[ModelChoice]
    # Providers that could not list their models (operator hint + chat words).
    problems: list[ProviderError]


async def available_models(providers: dict[str, Provider], default_key: str) -> ModelMenu:
    """Every model the user can pick, once each: what Ollama really has (named as
    it names them), plus configured cloud models. The default stays listed even
    if Ollama is down or lacks it, so the picker shows what will be tried (and
    the error says what to do)."""
    choices: list[ModelChoice] = []
    problems: list[ProviderError] = []
    for provider in providers.values():
        try:
            names = await provider.list_models()
        except ProviderError as exc:
            problems.append(exc)
            continue
        choices += [parse_model_key(f"{provider.name}:{name}") for name in names]
    default = parse_model_key(default_key)
    if default not in choices and default.provider in providers:
        choices.insert(0, default)
    return ModelMenu(list(dict.fromkeys(choices)), problems)

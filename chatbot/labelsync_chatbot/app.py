"""The Chainlit app: chat with a model, write each conversation as a labelsync file.

Run it with `labelsync-chatbot` (see __main__.py) or `chainlit run <this file>`.
It knows nothing about Label Studio; the labelsync daemon picks the files up.

When is a conversation "ended"? Chainlit's on_chat_end fires on every socket
disconnect (a network blip, a reload, "New chat"), so it is NOT taken as the
end. The user ends a conversation explicitly: the "End conversation" button, or
typing `/end`. Writing again after that (a new message, feedback) keeps the
file, and saying something new reopens it (`ended` goes back to false).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import chainlit as cl
from chainlit.input_widget import InputWidget, Select
from chainlit.types import ThreadDict

from labelsync_chatbot.conversation import (
    Conversation,
    add_assistant_message,
    add_user_message,
    end,
    from_contract,
    provider_messages,
    set_feedback,
    to_contract,
)
from labelsync_chatbot.providers import (
    ModelChoice,
    ProviderError,
    ReplyInterrupted,
    available_models,
    build_providers,
    parse_model_key,
)
from labelsync_chatbot.settings import load_settings
from labelsync_chatbot.writer import read_conversation, write_conversation

log = logging.getLogger("labelsync_chatbot")

settings = load_settings()
providers = build_providers(settings)

CONVERSATION = "labelsync_conversation"
# Chainlit's thumbs rate the *run* (the on_message step) that produced a reply, so
# feedback arrives with the run's id: map it to the reply it is about.
FEEDBACK_TARGETS = "labelsync_feedback_targets"
END_ACTION = "labelsync_end_conversation"
END_COMMAND = "/end"

# One writer at a time per conversation, so an older snapshot never lands last.
_write_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


def _now() -> datetime:
    return datetime.now(UTC)


async def save(conv: Conversation) -> None:
    if not conv.messages:
        return  # the contract needs at least one message
    async with _write_locks[conv.thread_id]:
        data = to_contract(conv, _now())  # snapshot taken under the lock
        await asyncio.to_thread(write_conversation, settings.watch_dir, data)


# --- login and data layer: only when configured -------------------------------

if settings.auth_enabled:

    @cl.password_auth_callback
    async def _password_login(username: str, password: str) -> cl.User | None:
        import hmac

        expected = settings.user_passwords().get(username)
        if expected is not None and hmac.compare_digest(expected, password):
            return cl.User(identifier=username, metadata={"provider": "password"})
        return None


if settings.database_url:

    @cl.data_layer
    def _data_layer() -> Any:
        from labelsync_chatbot.datalayer import make_data_layer

        return make_data_layer(settings.database_url or "")


# --- chat ---------------------------------------------------------------------


def _user_identifier() -> str | None:
    user = cl.user_session.get("user")
    return getattr(user, "identifier", None)


def _chosen_model() -> ModelChoice:
    chosen = (cl.context.session.chat_settings or {}).get("model") or settings.default_model
    return parse_model_key(str(chosen))


async def _send_model_picker(initial_key: str) -> list[str]:
    menu = await available_models(providers, settings.default_model)
    items = {choice.label: choice.key for choice in menu.choices}
    keys = list(items.values())
    if items:
        initial = initial_key if initial_key in keys else keys[0]
        widgets: list[InputWidget] = [
            Select(id="model", label="Model", items=items, initial_value=initial)
        ]
        await cl.ChatSettings(widgets).send()
    return menu.problems


def _intro(problems: list[str], resumed: bool) -> str:
    choice = _chosen_model()
    lines = [
        f"Model: `{choice.model}` ({choice.provider}); change it in the chat settings.",
        f"This conversation is saved to `{settings.watch_dir}` after every reply. "
        f"Press *End conversation* or type `{END_COMMAND}` when you are done.",
    ]
    if resumed:
        lines.append("Resumed: new turns continue the same conversation file.")
    elif not settings.resume_enabled:
        lines.append(
            "Resume is off: it needs login (LABELSYNC_CHATBOT_USERS and CHAINLIT_AUTH_SECRET) "
            "and a data layer (LABELSYNC_CHATBOT_DATABASE_URL)."
        )
    lines += [f"⚠️ {problem}" for problem in problems]
    return "\n\n".join(lines)


def _end_button() -> cl.Action:
    return cl.Action(name=END_ACTION, payload={}, label="End conversation", icon="square")


@cl.on_chat_start
async def on_chat_start() -> None:
    session = cl.context.session
    conv = Conversation(
        thread_id=session.thread_id, session_id=session.id, user=_user_identifier()
    )
    cl.user_session.set(CONVERSATION, conv)
    cl.user_session.set(FEEDBACK_TARGETS, {})
    problems = await _send_model_picker(settings.default_model)
    await cl.Message(content=_intro(problems, resumed=False), actions=[_end_button()]).send()


@cl.on_chat_resume
async def on_chat_resume(thread: ThreadDict) -> None:
    session = cl.context.session
    data = await asyncio.to_thread(read_conversation, settings.watch_dir, thread["id"])
    if data is not None:
        conv = from_contract(data, session_id=session.id)
    else:
        conv = _from_thread(thread, session.id)
    conv.user = conv.user or _user_identifier()
    cl.user_session.set(CONVERSATION, conv)
    cl.user_session.set(
        FEEDBACK_TARGETS,
        {
            step["parentId"]: step["id"]
            for step in thread.get("steps") or []
            if step.get("type") == "assistant_message" and step.get("parentId")
        },
    )
    previous = (session.chat_settings or {}).get("model") or settings.default_model
    problems = await _send_model_picker(str(previous))
    await cl.Message(content=_intro(problems, resumed=True), actions=[_end_button()]).send()


def _from_thread(thread: ThreadDict, session_id: str) -> Conversation:
    """The file is gone (e.g. the watch dir was emptied): rebuild it from what the
    data layer kept. Error notices and interrupted replies are flagged and skipped."""
    conv = Conversation(thread_id=thread["id"], session_id=session_id)
    for step in thread.get("steps") or []:
        role = {"user_message": "user", "assistant_message": "assistant"}.get(step.get("type", ""))
        metadata = step.get("metadata") or {}
        if role is None or step.get("isError") or metadata.get("labelsync") != "recorded":
            continue
        at = datetime.fromisoformat(step.get("createdAt") or _now().isoformat())
        if role == "user":
            add_user_message(conv, step["id"], step.get("output") or "", at)
        else:
            add_assistant_message(
                conv, step["id"], step.get("output") or "", at,
                model=metadata.get("model", ""), provider=metadata.get("provider", ""),
            )
    return conv


def _conversation() -> Conversation:
    conv = cl.user_session.get(CONVERSATION)
    if conv is None:  # should not happen; keep the chat usable anyway
        session = cl.context.session
        conv = Conversation(thread_id=session.thread_id, session_id=session.id)
        cl.user_session.set(CONVERSATION, conv)
    return conv


@cl.on_message
async def on_message(message: cl.Message) -> None:
    conv = _conversation()
    if message.content.strip() == END_COMMAND:
        await _end_conversation(conv)
        return

    choice = _chosen_model()
    provider = providers.get(choice.provider)
    if provider is None:
        await cl.ErrorMessage(
            content=f"{choice.provider} is not configured. Pick another model in the chat settings."
        ).send()
        return

    add_user_message(conv, message.id, message.content, _now())
    message.metadata = {**(message.metadata or {}), "labelsync": "recorded"}
    await message.update()

    reply = cl.Message(content="")
    history = provider_messages(conv, settings.system_prompt)
    try:
        async for piece in provider.stream(choice.model, history):
            await reply.stream_token(piece)
    except ProviderError as exc:
        await _show_failure(reply, exc)
        return
    reply.metadata = {"labelsync": "recorded", "model": choice.model, "provider": choice.provider}
    await reply.send()
    add_assistant_message(
        conv, reply.id, reply.content, _now(), model=choice.model, provider=choice.provider
    )
    if reply.parent_id:
        cl.user_session.get(FEEDBACK_TARGETS, {})[reply.parent_id] = reply.id
    await save(conv)


async def _show_failure(reply: cl.Message, exc: ProviderError) -> None:
    """Tell the user, keep the app running, and keep the file as it was: the
    half reply is never recorded."""
    if isinstance(exc, ReplyInterrupted) and exc.started and reply.content:
        reply.content += "\n\n*[reply interrupted]*"
        reply.metadata = {"labelsync": "interrupted"}
        await reply.send()
        text = (
            f"The reply was cut off: {exc}. The partial reply above is not saved in the "
            "conversation; send your message again to retry."
        )
    else:
        text = str(exc)
    log.warning("reply failed: %s", exc)
    await cl.ErrorMessage(content=text).send()


async def _end_conversation(conv: Conversation) -> None:
    end(conv)
    await save(conv)
    if conv.messages:
        text = "Conversation ended and saved. Start a new chat for a new conversation."
    else:
        text = "Nothing to save yet: this conversation has no messages."
    await cl.Message(content=text).send()


@cl.action_callback(END_ACTION)
async def on_end_action(action: cl.Action) -> None:
    await _end_conversation(_conversation())


@cl.on_feedback
async def on_feedback(feedback: Any) -> None:
    """Thumbs up/down (and comment) from Chainlit's UI; only offered when a data
    layer is configured. Written into the file on the rated message."""
    conv = _conversation()
    target = cl.user_session.get(FEEDBACK_TARGETS, {}).get(feedback.forId, feedback.forId)
    if set_feedback(conv, target, int(feedback.value), feedback.comment):
        await save(conv)


@cl.on_chat_end
async def on_chat_end() -> None:
    # Fires on every disconnect, so it does not mean "ended" (see module doc).
    # The file is already up to date: it is written after every reply.
    pass

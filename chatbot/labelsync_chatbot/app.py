"""The Chainlit app: chat with a model, write each conversation as a labelsync file.

Run it with `labelsync-chatbot` (see __main__.py) or `chainlit run <this file>`.
It knows nothing about Label Studio; the labelsync daemon picks the files up.

Two audiences, two channels: the person chatting reads the chat (plain words,
what they can do); the operator reads the log and the README (paths, settings,
the command that fixes it).

When is a conversation "ended"? Chainlit's on_chat_end fires on every socket
disconnect (a network blip, a reload, "New chat"), so it is NOT taken as the
end. The user ends a conversation explicitly: the "End conversation" button
(always under the latest message), or typing `/end`. Writing again after that
(a new message, feedback) keeps the file, and saying something new reopens it
(`ended` goes back to false).

What gets thumbs: Chainlit rates the *run* (the on_message step) through the
last assistant message inside it. Only complete replies stay inside their run;
every notice from the chat itself (greeting, errors, an interrupted reply, a
model change, the end) is sent outside any run, so it is never offered for
rating: it is not part of the saved conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.input_widget import InputWidget, Select
from chainlit.types import ThreadDict

from labelsync_chatbot import words
from labelsync_chatbot.chainlit_files import prepare_app_root
from labelsync_chatbot.conversation import (
    Conversation,
    Said,
    end,
    from_contract,
    history_for,
    iso_utc,
    record_turn,
    set_feedback,
    to_contract,
)
from labelsync_chatbot.login import ReadableLoginRefusal, password_matches
from labelsync_chatbot.providers import (
    ModelChoice,
    ProviderError,
    available_models,
    build_providers,
    parse_model_key,
)
from labelsync_chatbot.settings import load_settings
from labelsync_chatbot.thread_history import RECORDED, conversation_from_thread, feedback_targets
from labelsync_chatbot.writer import read_conversation, write_conversation

log = logging.getLogger("labelsync_chatbot")

settings = load_settings()
providers = build_providers(settings)

CONVERSATION = "labelsync_conversation"
# Chainlit's thumbs rate the *run* (the on_message step) that produced a reply, so
# feedback arrives with the run's id: map it to the reply it is about.
FEEDBACK_TARGETS = "labelsync_feedback_targets"
END_ACTION = "labelsync_end_conversation"
END_BUTTON = "labelsync_end_button"
MODEL_KEY = "labelsync_model_key"

# One writer at a time per conversation, so an older snapshot never lands last.
_write_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


def _now() -> datetime:
    return datetime.now(UTC)


def _prepare_chainlit_root() -> None:
    """This chat's Readme and login words in Chainlit's app root. Runs when
    Chainlit imports the app: after it wrote its stock translations, before it
    writes its stock Readme, and before anything is served."""
    from chainlit.config import APP_ROOT, TRANSLATIONS_DIR
    from chainlit.markdown import DEFAULT_MARKDOWN_STR

    try:
        prepare_app_root(Path(APP_ROOT), DEFAULT_MARKDOWN_STR, Path(TRANSLATIONS_DIR))
    except OSError as exc:
        log.warning("could not write the chat's Readme and login words to %s: %s", APP_ROOT, exc)


_prepare_chainlit_root()
log.info("conversations are saved to %s after every reply", settings.watch_dir.resolve())
if not settings.resume_enabled:
    log.info(
        "resume and feedback are off: they need login (LABELSYNC_CHATBOT_USERS and "
        "CHAINLIT_AUTH_SECRET) and a data layer (LABELSYNC_CHATBOT_DATABASE_URL)"
    )


async def save(conv: Conversation) -> None:
    if not conv.messages:
        return  # the contract needs at least one message
    async with _write_locks[conv.thread_id]:
        data = to_contract(conv, _now())  # snapshot taken under the lock
        await asyncio.to_thread(write_conversation, settings.watch_dir, data)


# --- login and data layer: only when configured -------------------------------

if settings.auth_enabled:
    from chainlit.server import app as _server

    @cl.password_auth_callback
    async def _password_login(username: str, password: str) -> cl.User | None:
        if password_matches(settings.user_passwords(), username, password):
            return cl.User(identifier=username, metadata={"provider": "password"})
        return None

    _server.add_middleware(ReadableLoginRefusal)


if settings.database_url:

    @cl.data_layer
    def _data_layer() -> Any:
        from labelsync_chatbot.datalayer import make_data_layer

        return make_data_layer(settings.database_url or "")


# --- what the chat says that is not the conversation --------------------------


def _user_identifier() -> str | None:
    user = cl.user_session.get("user")
    return getattr(user, "identifier", None)


def _chosen_model() -> ModelChoice:
    chosen = (cl.context.session.chat_settings or {}).get("model") or settings.default_model
    return parse_model_key(str(chosen))


def _end_button() -> cl.Action:
    return cl.Action(
        name=END_ACTION, payload={}, label=words.END_BUTTON, icon="square",
        tooltip="Save this conversation as finished",
    )


async def _move_end_button(for_id: str | None) -> None:
    """Keep one End button, under the latest message, where the user is looking."""
    old: cl.Action | None = cl.user_session.get(END_BUTTON)
    if old is not None:
        await old.remove()
    button = None
    if for_id is not None:
        button = _end_button()
        await button.send(for_id=for_id)
    cl.user_session.set(END_BUTTON, button)


def _outside_the_run(message: cl.Message | cl.ErrorMessage) -> cl.Message | cl.ErrorMessage:
    # Chainlit parents a message to the running step; a top-level one gets no thumbs.
    message.parent_id = None
    return message


async def _say(content: str, *, error: bool = False, end_button: bool = True) -> None:
    """A notice from the chat itself: shown, never recorded, never rated."""
    message = _outside_the_run(cl.ErrorMessage(content=content) if error else cl.Message(content))
    await message.send()
    await _move_end_button(message.id if end_button else None)


async def _send_model_picker(initial_key: str) -> list[ProviderError]:
    menu = await available_models(providers, settings.default_model)
    items = {choice.label: choice.key for choice in menu.choices}
    keys = list(items.values())
    if items:
        initial = initial_key if initial_key in keys else keys[0]
        widgets: list[InputWidget] = [
            Select(id="model", label="Model", items=items, initial_value=initial)
        ]
        await cl.ChatSettings(widgets).send()
    for problem in menu.problems:
        log.warning("listing models: %s", problem)
    cl.user_session.set(MODEL_KEY, _chosen_model().key)
    return menu.problems


# --- chat ---------------------------------------------------------------------


@cl.on_chat_start
async def on_chat_start() -> None:
    session = cl.context.session
    conv = Conversation(
        thread_id=session.thread_id,
        session_id=session.id,
        user=_user_identifier(),
        system_prompt=settings.system_prompt,
    )
    cl.user_session.set(CONVERSATION, conv)
    cl.user_session.set(FEEDBACK_TARGETS, {})
    problems = await _send_model_picker(parse_model_key(settings.default_model).key)
    await _say(words.greeting(_chosen_model(), problems))


@cl.on_chat_resume
async def on_chat_resume(thread: ThreadDict) -> None:
    session = cl.context.session
    data = await asyncio.to_thread(read_conversation, settings.watch_dir, thread["id"])
    if data is not None:
        conv = from_contract(data, session_id=session.id, system_prompt=settings.system_prompt)
    else:
        conv = conversation_from_thread(
            thread, session_id=session.id, system_prompt=settings.system_prompt, now=_now()
        )
    conv.user = conv.user or _user_identifier()
    cl.user_session.set(CONVERSATION, conv)
    cl.user_session.set(FEEDBACK_TARGETS, feedback_targets(thread))
    previous = (session.chat_settings or {}).get("model") or settings.default_model
    problems = await _send_model_picker(parse_model_key(str(previous)).key)
    await _show_with_history(thread, words.resumed(_chosen_model(), problems))


async def _show_with_history(thread: ThreadDict, content: str) -> None:
    """Show a notice at the end of a reopened thread, once per opening.

    Chainlit 2.12 calls on_chat_resume with the stored thread, then sends that
    same thread to the browser, which replaces the chat with it: a message sent
    from on_chat_resume is wiped (it shows up only after a reload, from the
    store) and every reopening would store one more. So the notice is appended
    to the thread being sent, never stored; its End button is sent beforehand
    and shows once the message arrives."""
    notice = _outside_the_run(cl.Message(content))
    notice.created_at = iso_utc(_now())
    thread["steps"] = [*(thread.get("steps") or []), notice.to_dict()]
    await _move_end_button(notice.id)


def _conversation() -> Conversation:
    conv = cl.user_session.get(CONVERSATION)
    if conv is None:  # should not happen; keep the chat usable anyway
        session = cl.context.session
        conv = Conversation(
            thread_id=session.thread_id, session_id=session.id,
            system_prompt=settings.system_prompt,
        )
        cl.user_session.set(CONVERSATION, conv)
    return conv


@cl.on_settings_update
async def on_settings_update(_changed: dict[str, Any]) -> None:
    choice = _chosen_model()
    if choice.key == cl.user_session.get(MODEL_KEY):
        return
    cl.user_session.set(MODEL_KEY, choice.key)
    await _say(words.model_changed(choice))


@cl.on_message
async def on_message(message: cl.Message) -> None:
    conv = _conversation()
    if message.content.strip() == words.END_COMMAND:
        await _end_conversation(conv)
        return

    choice = _chosen_model()
    provider = providers.get(choice.provider)
    if provider is None:
        log.warning("%s was picked but %s is not configured", choice.key, choice.provider)
        await _say(words.model_not_offered(choice), error=True)
        return

    question = Said(message.id, message.content, _now())
    reply = cl.Message(content="")
    try:
        history = history_for(conv, message.id, message.content)
        async for piece in provider.stream(choice.model, history):
            await reply.stream_token(piece)
    except ProviderError as exc:
        await _show_failure(reply, exc)
        return
    reply.metadata = {"labelsync": RECORDED, "model": choice.model, "provider": choice.provider}
    await reply.send()
    record_turn(
        conv, question, Said(reply.id, reply.content, _now()),
        model=choice.model, provider=choice.provider,
    )
    # Marked only now, so a rebuild from the data layer skips failed attempts.
    message.metadata = {**(message.metadata or {}), "labelsync": RECORDED}
    await message.update()
    if reply.parent_id:
        cl.user_session.get(FEEDBACK_TARGETS, {})[reply.parent_id] = reply.id
    await _move_end_button(reply.id)
    await save(conv)


async def _show_failure(reply: cl.Message, exc: ProviderError) -> None:
    """Tell the user what they can do, log what the operator can do, and keep the
    conversation as it was: neither the question nor a half reply is recorded."""
    log.warning("reply failed (%s): %s", type(exc).__name__, exc)
    if reply.content:
        # Keep what the user saw, marked, but outside the run: it cannot be rated.
        partial = reply.content
        await reply.remove()
        shown = _outside_the_run(cl.Message(words.interrupted(partial)))
        shown.metadata = {"labelsync": "interrupted"}
        await shown.send()
    await _say(exc.for_user, error=True)


async def _end_conversation(conv: Conversation) -> None:
    end(conv)
    await save(conv)
    if conv.messages:
        await _say(words.ENDED, end_button=False)
    else:
        await _say(words.NOTHING_TO_END)


@cl.action_callback(END_ACTION)
async def on_end_action(action: cl.Action) -> None:
    await _end_conversation(_conversation())


@cl.on_feedback
async def on_feedback(feedback: Any) -> None:
    """Thumbs up/down (and comment) from Chainlit's UI; only offered when a data
    layer is configured, and only on complete replies. Written into the file on
    the rated message, with the time it was given."""
    conv = _conversation()
    target = cl.user_session.get(FEEDBACK_TARGETS, {}).get(feedback.forId, feedback.forId)
    outcome = set_feedback(conv, target, int(feedback.value), feedback.comment, _now())
    if outcome == "recorded":
        await save(conv)
    elif outcome == "not recorded":
        log.warning("feedback on %s, which is not in the saved conversation: dropped", target)


@cl.on_chat_end
async def on_chat_end() -> None:
    # Fires on every disconnect, so it does not mean "ended" (see module doc).
    # The file is already up to date: it is written after every reply.
    pass

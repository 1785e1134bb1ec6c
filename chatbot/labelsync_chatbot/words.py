"""What the chat says to the person chatting, in one place.

Plain words about what they can do. No path, host, setting or command: those
are for the operator and go to the log (see providers.ProviderError) and the
README. The Readme the user opens is chainlit_files.CHAT_README.
"""

from __future__ import annotations

from collections.abc import Iterable

from labelsync_chatbot.providers import ModelChoice, ProviderError

END_COMMAND = "/end"
END_BUTTON = "End conversation"
GREETING_START = "Hello! Replies come from"
RESUMED_START = "Welcome back"
INTERRUPTED_MARK = "*[reply interrupted]*"
ENDED = (
    "Conversation ended and saved. Thank you! Start a new chat for a new conversation, "
    "or write here to take this one up again."
)
NOTHING_TO_END = "Nothing to save yet: this conversation has no messages."


def model_line(choice: ModelChoice) -> str:
    return f"`{choice.model}` ({choice.provider})"


def _problems(problems: Iterable[ProviderError]) -> list[str]:
    return [f"⚠️ {text}" for text in dict.fromkeys(p.for_user for p in problems)]


def greeting(choice: ModelChoice, problems: Iterable[ProviderError]) -> str:
    return "\n\n".join([
        f"{GREETING_START} {model_line(choice)}. To use another model, open the chat "
        "settings (the gear next to the message box).",
        "Your messages and the replies are saved after every reply, so that people can "
        "review the answers. The Readme at the top says more.",
        f"When you are done, press *{END_BUTTON}* under the latest message, or type "
        f"`{END_COMMAND}`.",
        *_problems(problems),
    ])


def resumed(choice: ModelChoice, problems: Iterable[ProviderError]) -> str:
    return "\n\n".join([
        f"{RESUMED_START}: what you write now continues this conversation. "
        f"Replies come from {model_line(choice)}.",
        *_problems(problems),
    ])


def model_changed(choice: ModelChoice) -> str:
    return f"Model changed: the next replies come from {model_line(choice)}."


def model_not_offered(choice: ModelChoice) -> str:
    return (
        f"The model `{choice.model}` is not available here. Pick another one in the chat "
        "settings, then send your message again."
    )


def interrupted(partial: str) -> str:
    return f"{partial}\n\n{INTERRUPTED_MARK}"

"""The redactor's two failures; neither message ever holds a redacted value."""


class RedactionConfigError(ValueError):
    """The redaction settings cannot be used: every problem, one line, naming the setting."""


class RedactionError(RuntimeError):
    """Redacting a conversation failed (only the optional named-entity model can)."""

"""lrtower's client library (imports as `lrtower`)."""

__version__ = "0.1.0"

"""Hooks for training frameworks, each importing its framework only when imported itself:
`lrtower.integrations.transformers` and `lrtower.integrations.keras`."""

"""Read models and their event handlers: each one idempotent per stream version."""

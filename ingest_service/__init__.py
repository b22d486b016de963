"""Receives Telegram webhooks and API writes and publishes them as events to JetStream."""

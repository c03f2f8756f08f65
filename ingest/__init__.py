"""Ingest: MQTT messages in, validated and deduplicated, stored, handed to detection."""

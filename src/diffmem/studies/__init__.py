"""Orchestration: audit, prompt curation, extraction, demo."""

"""Perisai services: registration, coverage, notifications."""

"""Notifications: tells workers they are covered, by SMS and email, and records each delivery."""

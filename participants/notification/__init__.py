"""The notification participant; see service.py."""

"""The flight participant; see service.py."""

"""The inventory participant; see service.py."""

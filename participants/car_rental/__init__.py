"""The car rental participant; see service.py."""

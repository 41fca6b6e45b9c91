"""The shipping participant; see service.py."""

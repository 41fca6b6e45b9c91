"""The hotel participant; see service.py."""

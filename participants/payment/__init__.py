"""The payment participant; see service.py."""

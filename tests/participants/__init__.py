"""Tests of the example participant services, over real gRPC."""

"""OpenID Connect: the relying-party client the hub signs users in with, and a real provider on loopback
(`simulator.py`) for the demo and the tests."""

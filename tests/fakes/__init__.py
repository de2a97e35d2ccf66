"""Local stand-ins for third-party HTTP services (loopback only), shared by tests."""

"""Loopback fakes of the external services the platform talks to, speaking their real protocols."""

"""Phantom: detect automated agents among shop visitors and price products so agents stop leaking margin."""

__version__ = "0.1.0"

"""Test servers started as separate processes on 127.0.0.1."""

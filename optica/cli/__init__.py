"""The ``optica`` command."""

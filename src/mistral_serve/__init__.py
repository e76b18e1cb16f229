"""mistral-serve: a self-hosted inference server for Mistral 7B."""

__version__ = "0.1.0"

"""bailclio: discover the taxonomy of situations in which language models leave a conversation."""

__version__ = "0.1.0"

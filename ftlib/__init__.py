"""ftlib: the helper package of the fine-tuning course. Each module is one concept of the course."""

__version__ = "0.1.0"

"""Roost: one Python package that does what a postfix + dovecot pair does."""

__version__ = "0.1.0"

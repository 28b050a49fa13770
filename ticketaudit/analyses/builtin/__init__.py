"""The built-in analyses: each module here exposes ``ANALYSIS`` and is registered automatically.

Modules stay light to import (the CLI's help and the schema read them): the computation they
delegate to is imported inside their methods.
"""

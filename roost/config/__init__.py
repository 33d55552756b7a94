"""Roost configuration: main.cf syntax, typed Settings, validation.

    settings = roost.config.load(path)   # main.cf, its directory, or None

See settings.py for the parameter table.
"""

from roost.config.settings import (
    PARAMETERS,
    ConfigError,
    Settings,
    config_path,
    from_values,
    load,
    load_text,
    local_hostname,
    parameter_names,
)
from roost.config.syntax import split_list
from roost.config.values import parse_network, parse_resolver, parse_time, table_path

__all__ = [
    "PARAMETERS",
    "ConfigError",
    "Settings",
    "config_path",
    "from_values",
    "load",
    "load_text",
    "local_hostname",
    "parameter_names",
    "parse_network",
    "parse_resolver",
    "parse_time",
    "split_list",
    "table_path",
]

"""Which regularizer plugins this worker host offers, known without importing a framework.

The supervisor never imports Keras; it tells the server these names with every claim, so
the form can offer them. worker/regularizers.py imports and registers the plugins
themselves in the training child.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "reglab.regularizers"
PLUGIN_ENV = "REGLAB_REGULARIZER_PLUGINS"


def configured_plugins() -> dict[str, str]:
    """REGLAB_REGULARIZER_PLUGINS on this worker host: `name=module:attribute`, comma-separated."""
    plugins: dict[str, str] = {}
    for item in os.environ.get(PLUGIN_ENV, "").split(","):
        name, _, target = item.strip().partition("=")
        if name and target:
            plugins[name.strip()] = target.strip()
    return plugins


def plugin_names() -> list[str]:
    """Every plugin this host offers: configured ones and installed entry points."""
    names = set(configured_plugins()) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)

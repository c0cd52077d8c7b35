"""Model families. Each public module registers its presets with ``@register_model``.

Nothing is imported here: the registry imports the family modules on its first query.
"""

"""Loss functions shared across families, registered with ``@register_loss``."""

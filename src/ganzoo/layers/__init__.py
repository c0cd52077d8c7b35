"""Building blocks shared by several families (normalisation, attention, discriminators)."""

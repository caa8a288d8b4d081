"""The numbering authority (付番機関): the personal number and its code-conversion table."""

"""The resident registry simulator (住基ネット): residents, their changes, look-ups."""

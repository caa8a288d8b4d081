"""My Portal (マイポータル), the municipal counter and the oversight console, on the web."""

"""IC cards (公的個人認証, simulated): a test CA, cards with a PIN, revocation, login checks."""

"""The platform's stream processors: approval, code conversion, the decider, relays."""

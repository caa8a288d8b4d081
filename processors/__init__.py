"""The platform's stream processors (faust agents) and its code conversion."""

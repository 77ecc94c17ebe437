"""Pure domain: models, lifecycle and policy. No I/O and no framework imports."""

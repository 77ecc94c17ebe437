"""Use cases. They import domain, ports and runtime only, return domain objects and raise
domain errors."""

"""Wake-ups between the parts of rdev and between replicas."""

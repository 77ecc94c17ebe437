"""The moving parts of the core: the dispatcher (queue, slots, leases, timeouts, cancel), the
output decoder and the stream hub (persist, then publish, then replay)."""

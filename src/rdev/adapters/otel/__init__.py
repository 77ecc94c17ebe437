"""OpenTelemetry tracing, the optional extra `rdev[otel]`. Only `setup.tracer_provider` is
imported unconditionally (by bootstrap), and it imports opentelemetry only when OTEL_* asks for
tracing: without the extra or without the variables rdev runs untraced, at no cost."""

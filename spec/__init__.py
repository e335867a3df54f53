"""The project's own runtime-spec v1.3 JSON schemas (see spec/README.md)."""

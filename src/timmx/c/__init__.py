"""Plain-C export target: kernel library and weight packing."""

"""Lowering of a prepared timm model to the C target's IR: capture, graph passes."""

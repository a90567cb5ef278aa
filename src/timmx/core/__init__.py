"""The format-agnostic core: backend contract, options, job, pipeline, verification.

Nothing here imports the CLI (Typer, Rich) or a backend; heavy libraries load inside functions.
"""

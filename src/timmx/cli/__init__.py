"""The ``timmx`` command line: everything Typer and Rich (no other package imports them)."""


def main() -> None:
    """Console-script entry point."""
    from timmx.cli.app import app

    app()

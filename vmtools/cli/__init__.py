"""The four commands. Only this package imports typer; each module is one console script."""

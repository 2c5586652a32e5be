"""Flag checks shared by the benchmark scripts: a bad value exits (status 2,
through `parser.error`) with a message naming the flag and the value."""


def require_at_least(parser, minimums):
    """Exits through `parser.error` at the first flag below its minimum:
    `--repeats must be >= 3, got 2`.

    Args:
        parser: The script's `argparse.ArgumentParser`.
        minimums: `{flag: (value, minimum)}`, in the order to check; a list
            value (e.g. `--batches`) is checked item by item.
    """
    for flag, (value, minimum) in minimums.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item < minimum:
                parser.error(f"{flag} must be >= {minimum}, got {item}")

"""``python -m helo_smtp``: the same as the ``helo-smtp`` console script."""

from helo_smtp.cli.main import main

if __name__ == "__main__":
    main()

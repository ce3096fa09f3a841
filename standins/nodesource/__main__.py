"""``python -m standins.nodesource serve|build ...``: see server.main."""

from .server import main

if __name__ == "__main__":
    main()

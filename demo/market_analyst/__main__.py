"""``python -m demo.market_analyst``: see :mod:`demo.market_analyst.app`."""

from .app import main

if __name__ == "__main__":
    main()

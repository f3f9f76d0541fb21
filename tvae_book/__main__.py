"""``python -m tvae_book``: the runner's command line."""
import sys

from tvae_book.cli import main

sys.exit(main())

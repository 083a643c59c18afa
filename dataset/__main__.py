"""``python -m dataset``: see dataset/cli.py."""
import sys

from .cli import main

sys.exit(main())

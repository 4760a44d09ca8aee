"""``python -m cli``: the same as the ``govmail`` command."""

from cli.main import main

main()

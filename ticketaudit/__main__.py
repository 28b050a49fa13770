"""``python -m ticketaudit``: the same CLI as the ``ticketaudit`` command."""

from .cli import main

main()

"""The typer signatures of the commands the start-up fast path runs without typer.

Each module here holds one subcommand's ``command``: its options and
arguments as typer declares them (spellings, help, metavars), and nothing
else: it passes its parameters, by the same names, to the command's body
(``execute`` in ``cli/<command>.py``), which imports no typer.  The fast
path (``cli/fastpath.py``) reads the same command lines with
``cli/argv_parser.py`` and calls the same body, so both paths print, fail
and exit alike; ``cli/fast_commands.py`` declares each command a second
time for that parser, and tests/cli/test_argv_parser.py holds the two
declarations together.
"""

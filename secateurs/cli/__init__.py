"""The ``secateurs`` command line: one small module per subcommand."""

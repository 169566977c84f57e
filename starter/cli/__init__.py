"""`changeloop`, the command line: `starter.cli.main:app` is the console script."""

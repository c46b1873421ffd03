"""The `dpunet` command line: `dpunet <noun> <verb>`."""

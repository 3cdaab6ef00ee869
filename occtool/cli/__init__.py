"""The `occtool` command line: thin adapters over the core modules.

Command modules must not import torch (or anything heavy) at module level: `occtool --help`
stays fast. Import the core inside the command function.
"""

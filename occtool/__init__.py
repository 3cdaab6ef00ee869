"""occtool: occlusion-aware face recognition (library and `occtool` CLI).

The core modules never print and never import typer/rich; the CLI in `occtool.cli` owns
progress bars, messages and exit codes.
"""

__version__ = "0.1.0"

"""What the example scripts share: the ``--help`` formatter (``from _cli import HelpFormatter``; a script's folder is
on ``sys.path`` when it runs)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the description's line breaks and shows each option's default (none for flags and options
    whose help says what happens without them)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)

"""The leaderboard: validated entries per (method, dataset, protocol), their ranking and rendering.

- :mod:`mtlue.leaderboard.protocol` - the victims an entry is computed over
- :mod:`mtlue.leaderboard.entries` - entries from measured victims (score = the attacker's best defense)
- :mod:`mtlue.leaderboard.schema` - JSON Schema and consistency validation
- :mod:`mtlue.leaderboard.ranking` - order: lower score = better protection, clean as reference
- :mod:`mtlue.leaderboard.provenance` - git commit, poison hash
- :mod:`mtlue.leaderboard.reported` - the paper's reported numbers, shown apart
- :mod:`mtlue.leaderboard.render` - Markdown, HTML and plots
- :mod:`mtlue.leaderboard.build` - the whole leaderboard folder (``mtlue leaderboard``)
"""

from .build import Leaderboard, build_leaderboard
from .entries import Skipped, build_entries
from .protocol import DEFAULT_PROTOCOL, Protocol, resolve_protocol
from .ranking import rank_entries
from .render import Board, group_boards, render_html, render_markdown
from .schema import ENTRY_FORMAT, LeaderboardError, entry_schema, validate_entry

__all__ = [
    "DEFAULT_PROTOCOL",
    "ENTRY_FORMAT",
    "Board",
    "Leaderboard",
    "LeaderboardError",
    "Protocol",
    "Skipped",
    "build_entries",
    "build_leaderboard",
    "entry_schema",
    "group_boards",
    "rank_entries",
    "render_html",
    "render_markdown",
    "resolve_protocol",
    "validate_entry",
]

"""The leaderboard: validated entries per (method, dataset, protocol), their ranking and rendering.

- :mod:`mtlue.leaderboard.protocol` - the victims an entry is computed over
- :mod:`mtlue.leaderboard.measure` - per method and defense, mean ± std over seeds on a protocol's grid
- :mod:`mtlue.leaderboard.entries` - entries from measured victims (score = the attacker's best defense)
- :mod:`mtlue.leaderboard.schema` - JSON Schema and consistency validation
- :mod:`mtlue.leaderboard.ranking` - tie-aware ranks (lower score = better protection), clean as reference
- :mod:`mtlue.leaderboard.provenance` - git commit, poison hash
- :mod:`mtlue.leaderboard.reported` - the paper's reported numbers, shown apart
- :mod:`mtlue.leaderboard.render` - the tables' columns, Markdown and plots
- :mod:`mtlue.leaderboard.page` - the HTML page (sortable, filterable, a detail view per method)
- :mod:`mtlue.leaderboard.build` - the whole leaderboard folder (``mtlue leaderboard``)
"""

from .build import Leaderboard, build_leaderboard
from .entries import build_entries
from .measure import DefenseCell, Measurement, MethodScores, Skipped, measure
from .protocol import DEFAULT_PROTOCOL, Protocol, resolve_protocol
from .ranking import entry_ranks, rank_entries
from .page import render_html
from .render import Board, group_boards, render_markdown
from .schema import ENTRY_FORMAT, LeaderboardError, entry_schema, validate_entry

__all__ = [
    "DEFAULT_PROTOCOL",
    "ENTRY_FORMAT",
    "Board",
    "DefenseCell",
    "Leaderboard",
    "LeaderboardError",
    "Measurement",
    "MethodScores",
    "Protocol",
    "Skipped",
    "build_entries",
    "build_leaderboard",
    "entry_ranks",
    "entry_schema",
    "group_boards",
    "measure",
    "rank_entries",
    "render_html",
    "render_markdown",
    "resolve_protocol",
    "validate_entry",
]

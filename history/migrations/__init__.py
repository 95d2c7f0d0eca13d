"""The history's schema migrations (Alembic), configured in code: no alembic.ini.

`HistoryStore` runs them when it opens a database (`upgrade(connection)`), so an older history
is brought to head in place. A new revision: change `history/schema.py`, then add
`versions/NNNN_what.py` whose `down_revision` is the current head (by hand, or with
`alembic.command.revision(config(None), "what", rev_id="NNNN")`). Alter a table with
`op.batch_alter_table`: SQLite cannot alter most things in place. A test checks that a
migrated database equals `schema.py`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

HERE = Path(__file__).parent


def config(connection: Connection | None) -> Config:
    """Alembic's configuration of the history; `env.py` migrates `connection`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(config(None)).get_current_head() or ""


def known(revision: str) -> bool:
    """Whether `revision` is one of this code's revisions."""
    return revision in {
        s.revision for s in ScriptDirectory.from_config(config(None)).walk_revisions()
    }


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the database of `connection` to `revision`, inside the caller's transaction."""
    command.upgrade(config(connection), revision)

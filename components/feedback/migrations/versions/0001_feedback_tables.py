"""feedback tables: served slates and feedback events

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slates",
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("served_at", sa.Float, nullable=False),
        sa.Column("user", sa.String(64)),
        sa.Column("session_id", sa.String(200)),
        sa.Column("arm", sa.String(200), nullable=False),
        sa.Column("model_tag", sa.String(200), nullable=False),
        sa.Column("policy", sa.String(40), nullable=False),
        sa.Column("by", sa.String(40), nullable=False),
        sa.Column("items", sa.JSON, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("item", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(200)),
        sa.Column("position", sa.Integer),
        sa.Column("propensity", sa.Float),
        sa.Column("arm", sa.String(200)),
        sa.Column("model_tag", sa.String(200)),
        sa.Column("at", sa.Float),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("rating", sa.Float),
        sa.Column("text", sa.Text),
    )
    op.create_index("ix_events_user", "events", ["user"])
    op.create_index("ix_events_request_id", "events", ["request_id"])
    op.create_index("ix_events_item_kind", "events", ["item", "kind"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("slates")

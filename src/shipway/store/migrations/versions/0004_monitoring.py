"""monitoring: stored reference profiles and monitoring results

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("blob_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index(
        "ix_reference_profiles_dataset_id", "reference_profiles", ["dataset_id"], unique=False
    )
    op.create_table(
        "monitor_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_rows", sa.Integer(), nullable=False),
        sa.Column("n_drifted", sa.Integer(), nullable=False),
        sa.Column("n_tested", sa.Integer(), nullable=False),
        sa.Column("dataset_drifted", sa.Boolean(), nullable=False),
        sa.Column("worst", sa.String(length=16), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_monitor_runs_model", "monitor_runs", ["model"], unique=False)
    op.create_index("ix_monitor_runs_created_at", "monitor_runs", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("monitor_runs")
    op.drop_table("reference_profiles")

"""model images: container images built from model versions

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tag", sa.String(length=300), nullable=False),
        sa.Column("image_id", sa.String(length=80), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("base_image", sa.String(length=300), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("lock_digest", sa.String(length=64), nullable=False),
        sa.Column("sbom_digest", sa.String(length=64), nullable=True),
        sa.Column("pushed_ref", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_images", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_model_images_version_id"), ["version_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("model_images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_images_version_id"))
    op.drop_table("model_images")

"""model images: the digest of the SBOM artifact pushed beside the image

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sbom_pushed_digest", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_images", schema=None) as batch_op:
        batch_op.drop_column("sbom_pushed_digest")

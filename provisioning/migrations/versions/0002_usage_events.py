"""usage events recorded by the mail gateway

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'usage_events',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('account_id', sa.String(length=36), nullable=False),
        sa.Column('agency_id', sa.String(length=36), nullable=False),
        sa.Column('direction', sa.String(length=16), nullable=False),
        sa.Column('recipients_internal', sa.Integer(), nullable=False),
        sa.Column('recipients_external', sa.Integer(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('automatic', sa.Boolean(), nullable=False),
        sa.Column('message_hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_usage_events_at', 'usage_events', ['at'])
    op.create_index('ix_usage_events_agency_id', 'usage_events', ['agency_id'])
    op.create_index('ix_usage_account_at', 'usage_events', ['account_id', 'at'])
    op.create_index('ux_usage_once', 'usage_events', ['message_hash', 'account_id', 'direction'], unique=True)


def downgrade() -> None:
    op.drop_table('usage_events')

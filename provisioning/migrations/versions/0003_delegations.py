"""officials delegated to send as shared (agency) mailboxes

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'delegations',
        sa.Column('mailbox_id', sa.String(length=36), sa.ForeignKey('accounts.id'), nullable=False),
        sa.Column('delegate_id', sa.String(length=36), sa.ForeignKey('accounts.id'), nullable=False),
        sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('mailbox_id', 'delegate_id'),
    )
    op.create_index('ix_delegations_delegate_id', 'delegations', ['delegate_id'])


def downgrade() -> None:
    op.drop_table('delegations')

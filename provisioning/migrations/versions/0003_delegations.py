"""officials delegated to send as shared (agency) mailboxes; failed gateway logins

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
    op.create_table(
        'auth_failures',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('key', sa.String(length=400), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_auth_failures_key_at', 'auth_failures', ['key', 'at'])
    op.create_index('ix_auth_failures_at', 'auth_failures', ['at'])


def downgrade() -> None:
    op.drop_table('auth_failures')
    op.drop_table('delegations')

"""regular-use statistics: account spans, mailbox logins, daily and weekly usage rollups

Existing accounts get one span from their creation to their suspension or retirement (the earlier
history is not known).

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'account_spans',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('account_id', sa.String(length=36), sa.ForeignKey('accounts.id'), nullable=False),
        sa.Column('agency_id', sa.String(length=36), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_account_spans_account', 'account_spans', ['account_id', 'started_at'])
    op.create_index('ix_account_spans_ended_at', 'account_spans', ['ended_at'])
    op.execute(
        "INSERT INTO account_spans (account_id, agency_id, started_at, ended_at) "
        "SELECT id, agency_id, created_at, "
        "CASE WHEN status = 'active' THEN NULL ELSE COALESCE(suspended_at, retired_at, updated_at) END "
        "FROM accounts"
    )
    op.create_table(
        'login_events',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('account_id', sa.String(length=36), nullable=False),
        sa.Column('protocol', sa.String(length=16), nullable=False),
        sa.Column('client', sa.String(length=64), nullable=True),
        sa.Column('line_hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('line_hash'),
    )
    op.create_index('ix_login_events_at', 'login_events', ['at'])
    op.create_index('ix_login_events_account_id', 'login_events', ['account_id'])
    op.create_table(
        'usage_daily',
        sa.Column('account_id', sa.String(length=36), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('logins', sa.Integer(), nullable=False),
        sa.Column('working', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'day'),
    )
    op.create_index('ix_usage_daily_day', 'usage_daily', ['day'])
    op.create_table(
        'usage_weekly',
        sa.Column('week', sa.Date(), nullable=False),
        sa.Column('account_id', sa.String(length=36), nullable=False),
        sa.Column('active_days', sa.Integer(), nullable=False),
        sa.Column('working_days', sa.Integer(), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('last_day', sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint('week', 'account_id'),
    )
    op.create_index('ix_usage_weekly_account_id', 'usage_weekly', ['account_id'])
    op.create_table(
        'usage_rollup_state',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('watermark', sa.DateTime(timezone=True), nullable=True),
        sa.Column('calendar', sa.String(length=64), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('usage_rollup_state')
    op.drop_table('usage_weekly')
    op.drop_table('usage_daily')
    op.drop_table('login_events')
    op.drop_table('account_spans')

"""digital-certificate bindings, imported CRLs and sent expiry reminders

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'certificates',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('issuer', sa.Text(), nullable=False),
        sa.Column('issuer_hash', sa.String(length=64), nullable=False),
        sa.Column('serial', sa.String(length=42), nullable=False),
        sa.Column('subject', sa.Text(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=True),
        sa.Column('not_before', sa.DateTime(timezone=True), nullable=False),
        sa.Column('not_after', sa.DateTime(timezone=True), nullable=False),
        sa.Column('der', sa.LargeBinary(), nullable=False),
        sa.Column('account_id', sa.String(length=36), sa.ForeignKey('accounts.id'), nullable=True),
        sa.Column('agency_id', sa.String(length=36), sa.ForeignKey('agencies.id'), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('bound_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('unbound_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('fingerprint'),
    )
    op.create_index('ux_certificates_issuer_serial', 'certificates', ['issuer_hash', 'serial'], unique=True)
    op.create_index('ix_certificates_not_after', 'certificates', ['not_after'])
    op.create_index('ix_certificates_account_id', 'certificates', ['account_id'])
    op.create_index('ix_certificates_agency_id', 'certificates', ['agency_id'])
    op.create_index('ix_certificates_status', 'certificates', ['status'])
    op.create_table(
        'certificate_crls',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('issuer', sa.Text(), nullable=False),
        sa.Column('issuer_hash', sa.String(length=64), nullable=False),
        sa.Column('this_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_update', sa.DateTime(timezone=True), nullable=True),
        sa.Column('source', sa.String(length=1024), nullable=False),
        sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('issuer_hash'),
    )
    op.create_table(
        'certificate_revocations',
        sa.Column('crl_id', sa.Integer(), sa.ForeignKey('certificate_crls.id', ondelete='CASCADE'), nullable=False),
        sa.Column('serial', sa.String(length=42), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('crl_id', 'serial'),
    )
    op.create_table(
        'certificate_reminders',
        sa.Column('certificate_id', sa.String(length=36), sa.ForeignKey('certificates.id'), nullable=False),
        sa.Column('window', sa.Integer(), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('recipients', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('certificate_id', 'window'),
    )


def downgrade() -> None:
    op.drop_table('certificate_reminders')
    op.drop_table('certificate_revocations')
    op.drop_table('certificate_crls')
    op.drop_table('certificates')

"""Governance: the audit trail (identities and approvals come later)."""

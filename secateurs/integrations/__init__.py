"""Optional integrations with other libraries; never imported by ``import secateurs``."""

"""Optional integrations with model libraries; each is imported only when a model uses that library."""

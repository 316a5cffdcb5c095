"""PostgreSQL: the backend for deployments that outgrow one host."""

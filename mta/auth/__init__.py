"""SMTP AUTH credentials: password hashes, credentials tables and system users."""

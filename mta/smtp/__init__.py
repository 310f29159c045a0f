"""The SMTP server protocol, sans-IO: commands, replies, addresses and message data."""

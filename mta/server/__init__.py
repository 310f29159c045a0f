"""The trio side of receiving mail: listeners and the SMTP session driver."""

"""Mail: templates, the SMTP connection, and the sender the delivery worker runs."""

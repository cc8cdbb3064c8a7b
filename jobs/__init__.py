"""Durable work: JetStream consumers and scheduled jobs (push, e-mail, images, invoices)."""

"""The Sanic edge: REST blueprints per domain, WebSockets, authentication. Thin handlers only."""

"""The HTTP/WebSocket API and the live console (``jetmarket api``, docs/api.md): a front
door to the services that exist (``sql.query``, ``book.get``, ``status.query``, the
executor's ``ctl.exec`` request path) and to the bus, never a second implementation."""

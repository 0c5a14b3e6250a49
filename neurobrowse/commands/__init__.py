"""One module per CLI verb. Each defines ``register(subparsers)`` that adds its parser and sets
``func`` to a function ``(args) -> int``. A verb module parses, calls one library function, reports."""

"""Transport: gRPC servicers. They validate, translate proto <-> plain objects, and map
errors to status codes in one place (edge.py). No business logic here."""

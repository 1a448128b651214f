"""The server process: its configuration, its lifecycle (listen, load, serve, drain), its logs
and metrics, and replicas on one port."""

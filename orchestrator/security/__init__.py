"""Transport security and caller authentication, shared by the orchestrator, the
participants and the clients: `tls` loads certificates into gRPC credentials and opens
listeners and channels; `auth` reads the auth file and refuses calls without the role.
"""

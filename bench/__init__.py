"""The benchmark of issues 7 and 14: our orchestrator against two hand-written ceilings
(group commit, and a commit per write) and DBOS Transact.

`python bench/run.py --help` (or `make bench`) runs it. Modules imported by the DBOS
driver (`workload`, `load`, `driver`, `dbos_saga`) use only the standard library,
grpcio, protobuf and the generated stubs in `saga/`, because they also run in the
peer's own virtualenv, where the orchestrator is not installed.
"""

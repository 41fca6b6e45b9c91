"""Development tools around the orchestrator: the demo, the chaos run and the process
launcher they share with the tests and the benchmark. Run from the repository root
(`python -m tools.demo`); not shipped in the wheel."""

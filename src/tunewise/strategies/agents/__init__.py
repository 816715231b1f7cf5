"""Agent teams as strategies (weights frozen, so family "prompting"): `reflect`, `team`, `tool-agent`.

Each builds a framework-neutral `tunewise.agents.team.TeamSpec` per example, runs it through
`run_teams`, and reads the answer out of the final message; every agent's tokens and turns are counted.
"""

"""Agents on tunewise models: an AutoGen model client over any causal backend (`client.py`), tools
registered by name (`tools.py`), and framework-neutral teams (`team.py`) run through AutoGen
(`autogen_team.py`). Agent-team strategies live in `tunewise.strategies.agents`; the `tunewise agents`
commands run `tunewise.apps.agents_optimize` and `agents_write`. AutoGen is the optional extra `tunewise[agents]`.
"""

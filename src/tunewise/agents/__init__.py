"""Agents on tunewise models: an AutoGen model client over any causal backend (`client.py`), tools
registered by name (`tools.py`), and framework-neutral teams (`team.py`) run through AutoGen
(`autogen_team.py`). Agent-team strategies live in `tunewise.strategies.agents`; the `tunewise agents`
commands run `tunewise.apps.agents_optimize`, `agents_write` and `agents_ask`; the last drives `framework.py` (a
Microsoft Agent Framework agent over any OpenAI-compatible endpoint, such as `tunewise serve`). AutoGen and Agent
Framework are the optional extra `tunewise[agents]`.
"""

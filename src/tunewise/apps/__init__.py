"""Applications a command runs that are more than one call: agent teams doing tunewise's own work.

They sit above the run API (they get their config, task and models through `tunewise.runs`) and above
the agent-team machinery in `tunewise.agents`, which strategies also use; keeping them out of that
package lets the layers contract in pyproject.toml check both.
"""

"""Extra CLI commands, one module per area (report, trace, serve, agents, ...).

Each module imports `app` from `tunewise.cli` and decorates its functions with `@app.command()` and
`@friendly`; `tunewise.cli` imports every module here at start-up, so a new command is one new file.
"""
